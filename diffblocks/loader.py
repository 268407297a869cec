"""`diffblocks.load`: one loader for anything a user points at.

It looks at what it is given and dispatches:

=============================================  ===========================================
given                                          returns
=============================================  ===========================================
pipeline folder (``model_index.json`` or       `Pipeline.from_pretrained`
``modular_model_index.json``) or a Hub repo id
graph-only folder (``graph.json``) / graph     `Graph` (no components: load them with a
JSON file                                      pipeline folder, or call it with your own)
component folder (``config.json`` /            the component (our model, scheduler,
``scheduler_config.json`` / tokenizer files)   transformers encoder or tokenizer)
single file ``.safetensors`` / ``.ckpt``       `Pipeline` for a whole SD 1.x / 2.x / SDXL
(``allow_pickle=True`` for pickles)            file, else the model it holds (UNet, VAE,
                                               Flux transformer)
``.gguf`` file                                 the model it holds, weights kept quantised
=============================================  ===========================================

Anything else is a `LoadError` that says what was found and what was expected::

    pipe = diffblocks.load("v1-5-pruned-emaonly.safetensors")      # a ready Pipeline
    transformer = diffblocks.load("flux1-dev-Q4_0.gguf", torch_dtype=torch.bfloat16)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["load", "LoadError", "describe"]

PIPELINE_INDEXES = ("modular_model_index.json", "model_index.json")
GRAPH_FILE = "graph.json"
SINGLE_FILE_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin")
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "vocab.json", "spiece.model")
EXPECTED = ("a diffusers pipeline folder (model_index.json) or Hub repo id, a component folder "
            "(config.json / scheduler_config.json / tokenizer files), a graph folder (graph.json) "
            "or graph .json file, a single-file checkpoint (.safetensors, or .ckpt with "
            "allow_pickle=True), or a .gguf file")
#: model kinds a single file can hold -> our class
_MODEL_FOR_KIND = {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL", "flux": "FluxTransformer2DModel"}


class LoadError(ValueError):
    """The thing given is none of the kinds `load` knows; the message says what it found."""


def describe(path_or_repo: str | os.PathLike[str]) -> str:
    """What `load` would treat ``path_or_repo`` as: ``pipeline``, ``graph``, ``component``,
    ``single_file``, ``gguf`` or ``hub`` (raises `LoadError` for anything else)."""
    path = Path(path_or_repo).expanduser()
    if path.is_dir():
        names = {p.name for p in path.iterdir()}
        if any(n in names for n in PIPELINE_INDEXES):
            return "pipeline"
        if GRAPH_FILE in names:
            return "graph"
        if "config.json" in names or "scheduler_config.json" in names or any(n in names for n in TOKENIZER_FILES):
            return "component"
        shown = sorted(names)[:12]
        raise LoadError(f"{path}: a folder with {len(names)} file(s) {shown}, none of which says what it is; expected {EXPECTED}")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".gguf":
            return "gguf"
        if suffix in SINGLE_FILE_SUFFIXES:
            return "single_file"
        if suffix == ".json":
            return "graph"
        raise LoadError(f"{path}: a {suffix or 'suffix-less'} file; expected {EXPECTED}")
    text = os.fspath(path_or_repo)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        return "hub"
    raise LoadError(f"{text}: no such file or folder (and not a Hub repo id like 'owner/name'); expected {EXPECTED}")


def load(path_or_repo: str | os.PathLike[str], **kwargs: Any) -> Any:
    """Load a pipeline, graph or component from whatever ``path_or_repo`` is (see the module doc).

    Keyword arguments go to the loader chosen: ``torch_dtype``, ``preset``, ``config``,
    ``allow_pickle``, ``revision``, ...
    """
    kind = describe(path_or_repo)
    path = Path(path_or_repo).expanduser()
    if kind in ("pipeline", "hub"):
        from diffblocks.pipeline import Pipeline

        return Pipeline.from_pretrained(os.fspath(path_or_repo), **kwargs)
    if kind == "graph":
        from diffblocks.graph import Graph

        return Graph.from_json(path / GRAPH_FILE if path.is_dir() else path)
    if kind == "component":
        return _load_component(path, **kwargs)
    return _load_single_file(path, gguf=kind == "gguf", **kwargs)


def _component_hint(folder: Path) -> tuple[str, str]:
    """(library, class) of a component folder, read from its own config."""
    if (folder / "scheduler_config.json").is_file():
        return "diffusers", json.loads((folder / "scheduler_config.json").read_text())["_class_name"]
    if (folder / "config.json").is_file():
        data = json.loads((folder / "config.json").read_text())
        if "_class_name" in data:
            return "diffusers", data["_class_name"]
        if data.get("architectures"):
            return "transformers", data["architectures"][0]
        raise LoadError(f"{folder / 'config.json'}: names no class (_class_name or architectures); expected {EXPECTED}")
    config = folder / "tokenizer_config.json"
    data = json.loads(config.read_text()) if config.is_file() else {}
    return "transformers", data.get("tokenizer_class") or "AutoTokenizer"


def _load_component(folder: Path, **kwargs: Any) -> Any:
    from diffblocks.components import ComponentSpec
    from diffblocks.components.loading import load_spec

    hint = _component_hint(folder)
    spec = ComponentSpec(name=folder.name, type_hint=hint, pretrained_model_name_or_path=str(folder))
    return load_spec(spec, **kwargs)


def _load_single_file(path: Path, *, gguf: bool, config: Any = None, torch_dtype: Any = None,
                      allow_pickle: bool = False, **kwargs: Any) -> Any:
    import diffblocks.models as models
    from diffblocks.models.single_file.checkpoint import Checkpoint
    from diffblocks.models.single_file.detect import detect

    if gguf:
        from diffblocks.models.single_file.gguf import read_gguf

        ckpt = read_gguf(path)
    else:
        ckpt = Checkpoint(path, allow_pickle=allow_pickle)
    ckpt.check_not_lora("a model or pipeline checkpoint")
    found = detect(list(ckpt), ckpt.shape)
    if found is None:
        keys = list(ckpt)
        raise LoadError(f"{path}: {len(keys)} keys of no known layout (first: {', '.join(keys[:4])}); expected an "
                        "SD 1.x / 2.x / SDXL checkpoint, an LDM UNet or VAE, or a Flux (BFL) transformer")
    if found.is_pipeline and not gguf:
        from diffblocks.pipeline import Pipeline

        return Pipeline.from_single_file(path, config, torch_dtype=torch_dtype, allow_pickle=allow_pickle, **kwargs)
    cls = getattr(models, _MODEL_FOR_KIND["unet" if found.is_pipeline else found.kind])
    return cls.from_single_file(path, config, torch_dtype=torch_dtype, allow_pickle=allow_pickle, **kwargs)
