"""`Pipeline`: a graph, the components it runs on, and call defaults.

A pipeline is not a class per model family: it is a preset graph (or any graph) plus a
`ComponentsManager`. `Pipeline.from_pretrained(folder_or_repo)` reads the model's index, picks
the preset and declares the components (nothing is loaded until a node needs it)::

    pipe = Pipeline.from_pretrained("diffblocks:tiny-shapes")     # or a diffusers folder / Hub id
    image = pipe(prompt="a red circle on the left", seed=0, num_inference_steps=10).images[0]
    pipe.graph.replace("denoise/guidance", "apply_apg")            # swap one block of the loop
    pipe.save_pretrained("my-pipeline")                            # graph.json + indexes

(tests/pipeline/test_docstring.py runs this example against the shipped model.)

dtype policy: one pipeline computes in one dtype. ``torch_dtype`` (default: torch's default
dtype, float32) applies to every model component, whatever dtype its files were saved in —
the shipped fp16 model runs in float32 on a CPU unless ``torch_dtype=torch.float16`` is asked
for. A mapping (``{"vae": torch.float32, "default": torch.float16}``) is the one deliberate
way to mix.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import pipeline_io
from .adapters.api import PipelineAdapterMethods
from .adapters.record import write_adapter_record
from .blocks.errors import GraphError, InputError, Problem
from .components import ComponentError, ComponentsManager
from .fileio import read_text_bounded
from .graph import Graph
from .models.compiling import compile_components
from .pipeline_checks import warn_no_ops
from .presets import families, family_of, load_preset, preset_for_pipeline_class
from .sharing import GRAPH_FILE, graph_for_pipeline, push_pipeline
from .shipped import resolve_model_source
from .threads import threads_for_work, torch_threads

__all__ = ["Pipeline", "PipelineOutput", "GRAPH_FILE"]


#: Arguments the pipeline itself takes on top of the graph's inputs.
CALL_OPTIONS = ("seed", "callback", "progress", "threads")


@dataclass
class PipelineOutput:
    """What a pipeline call returns: ``images`` plus every other graph output in ``outputs``."""

    images: Any
    outputs: dict[str, Any] = field(default_factory=dict)


def _graph_from(preset: str | os.PathLike[str] | Graph) -> Graph:
    if isinstance(preset, Graph):
        return preset
    path = Path(preset)
    if path.suffix == ".json" and path.exists():
        text = read_text_bounded(path, what="graph file")
        if not text.lstrip().startswith("{"):
            raise GraphError(f"graph file '{path}' is not graph JSON (it must start with '{{')", title="cannot read graph")
        return Graph.from_json(text)
    return load_preset(str(preset))


class Pipeline(PipelineAdapterMethods):
    """A graph + a ComponentsManager + defaults for the call.

    Calling the pipeline runs the graph with the given inputs (a ``seed`` becomes a CPU
    ``torch.Generator``); unknown arguments are an error listing the valid ones. The graph keeps
    its memoisation cache between calls, so a second call with a new seed reuses the prompt
    encoding.

    ``threads``: intra-op CPU threads for a call. ``None`` (default) picks them from the work
    (denoiser parameters x latent size x batch, see ``diffblocks.threads``): one for the small
    shipped model, every core for SD-sized ones. An int fixes the count; ``pipe(threads=...)``
    overrides it for one call.

    Errors, one type per kind of mistake: ``InputError`` (a call input: missing for the
    workflow, out of range, a size the VAE cannot take; also a ``ValueError``), ``GraphError``
    (the graph), ``ComponentError`` (the model folder or a component), ``UntrustedCodeError``,
    ``HubError``, ``FileReadError``.
    """

    def __init__(
        self,
        graph: Graph,
        components: ComponentsManager | Mapping[str, Any],
        *,
        defaults: Mapping[str, Any] | None = None,
        source: str | None = None,
        threads: int | None = None,
    ) -> None:
        self.graph = graph
        self.components = components
        self.defaults = dict(defaults or {})
        self.source = source
        self.threads = threads

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: str | os.PathLike[str],
        *,
        preset: str | os.PathLike[str] | Graph | None = None,
        torch_dtype: Any = None,
        device: Any = None,
        revision: str | None = None,
        components: ComponentsManager | None = None,
        threads: int | None = None,
        **manager_kwargs: Any,
    ) -> "Pipeline":
        """Build a pipeline for a model folder or Hub repo.

        The graph is ``preset`` when given (a preset name such as ``"sd15"`` or
        ``"sd15-img2img"``, a graph JSON file, or a Graph); else the ``graph.json`` of the folder or
        Hub repo (at the commit its index was read from; a graph repo's ``code`` files are imported
        only with ``trust_remote_code=True``); else the preset for the index's pipeline class. The graph is
        validated against the declared components before anything is loaded.

        ``path_or_repo`` may also be a shipped model's name (``"diffblocks:tiny-shapes"``, what
        ``diffblocks run`` records in its PNGs). ``torch_dtype`` follows the dtype policy in the
        module docstring (default float32 for every model).
        """
        try:
            source = resolve_model_source(path_or_repo)
        except FileNotFoundError as err:
            raise ComponentError(str(err)) from None
        if Path(source).expanduser().exists() and not Path(source).expanduser().is_dir():
            raise ComponentError(f"model '{source}' is a file; pass a model folder (with model_index.json) or a Hub repo id")
        manager = components or ComponentsManager(
            torch_dtype=torch_dtype if torch_dtype is not None else torch.get_default_dtype(), device=device, **manager_kwargs
        )
        index = manager.add_from_index(source, revision=revision)
        graph = _graph_from(preset) if preset is not None else cls._graph_for_index(source, index, manager, revision)
        _apply_index_config(graph, manager.config)
        graph.validate(components=manager)
        return cls(graph, manager, source=source, threads=threads)

    @staticmethod
    def _graph_for_index(source: str, index: Any, manager: ComponentsManager, revision: str | None) -> Graph:
        shared = graph_for_pipeline(source, manager, revision)  # graph.json of the folder / repo
        if shared is not None:
            return shared
        class_name = index.class_name
        preset = preset_for_pipeline_class(class_name or "")
        if preset is None:
            known = ", ".join(sorted(c for f in families().values() for c in f.pipeline_classes))
            raise GraphError(
                [Problem("unknown_block", f"{index.path}: no preset for pipeline class {class_name!r}; "
                         f"pass preset=... (a preset name or graph file). Known classes: {known}")],
                title="cannot pick a preset",
            )
        return load_preset(preset)

    # -- running -----------------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        """Every argument a call accepts."""
        return sorted({*self.graph.inputs, *CALL_OPTIONS})

    def _inputs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        ports = self.graph.inputs
        unknown = sorted(k for k in kwargs if k not in ports and k not in CALL_OPTIONS)
        if unknown:
            raise TypeError(
                f"unknown argument(s) {', '.join(unknown)}; this pipeline takes: {', '.join(self.input_names)}"
            )
        seed = kwargs.pop("seed", None)
        if seed is not None:
            if kwargs.get("generator") is not None:
                raise TypeError("pass either seed= or generator=, not both")
            if "generator" not in ports:
                raise TypeError("this graph takes no generator, so seed= has no effect")
            kwargs["generator"] = torch.Generator("cpu").manual_seed(int(seed))
        merged = {**self.defaults, **kwargs}
        return {k: v for k, v in merged.items() if v is not None}

    def check_inputs(self, **kwargs: Any) -> dict[str, Any]:
        """The inputs a call with ``kwargs`` would run with; ``InputError`` names every bad or
        missing one (e.g. ``image`` for an img2img workflow). Loads nothing."""
        kwargs = {k: v for k, v in kwargs.items() if k not in ("callback", "progress", "threads")}
        inputs = self._inputs(kwargs)
        return self.graph.compile().check_inputs(inputs)

    def _native_size(self) -> int | None:
        """The denoiser's native image side in pixels (sample size x 8), when it has one."""
        if "image" not in self.graph.inputs or "unet" not in self.components:
            return None
        sample = getattr(getattr(self.components["unet"], "config", None), "sample_size", None)
        sample = sample[0] if isinstance(sample, (tuple, list)) else sample
        return int(sample) * 8 if isinstance(sample, int) else None

    def threads_for(self, inputs: Mapping[str, Any]) -> int:
        """Intra-op threads for a run with ``inputs`` (see the class docstring)."""
        if self.threads is not None:
            return int(self.threads)
        name = next((n for n in ("unet", "transformer") if n in self.components), None)
        if name is None:
            return torch.get_num_threads()
        denoiser = self.components[name]
        parameters = sum(p.numel() for p in denoiser.parameters()) if isinstance(denoiser, torch.nn.Module) else 0
        sample = getattr(getattr(denoiser, "config", None), "sample_size", None) or 64
        sample = sample[0] if isinstance(sample, (tuple, list)) else sample
        factor = 8
        height = inputs.get("height") or sample * factor
        width = inputs.get("width") or sample * factor
        batch = int(inputs.get("num_images_per_prompt") or 1) * 2  # conditional + unconditional
        return threads_for_work(parameters, (int(height) // factor) * (int(width) // factor), batch)

    def __call__(self, **kwargs: Any) -> PipelineOutput:
        """Run the graph: ``pipe(prompt=..., seed=0, num_inference_steps=20, ...)``.

        ``callback(step, t, carried)`` is called after every denoising step and may return
        replacement values (e.g. ``{"latents": ...}``) or ``diffblocks.graph.STOP``;
        ``progress=False`` silences the progress bar; ``threads=N`` sets the CPU threads for
        this call. Inputs are checked before any weight is loaded (``InputError``).
        """
        callback: Callable[..., Any] | None = kwargs.pop("callback", None)
        progress = kwargs.pop("progress", True)
        threads = kwargs.pop("threads", None)
        inputs = self._inputs(kwargs)
        self.graph.compile().check_inputs(inputs)  # before anything loads
        warn_no_ops(inputs, self._native_size() if inputs.get("image") is not None else None)
        count = threads if threads is not None else self.threads_for(inputs)
        with torch_threads(count):
            result = self.graph.run(
                inputs=inputs,
                components=self.components,
                progress=progress,
                callbacks=[callback] if callback is not None else None,
            )
        outputs = dict(result)
        return PipelineOutput(images=outputs.get("images"), outputs=outputs)

    # -- single files (diffblocks.single_file) ----------------------------------------------
    @classmethod
    def from_single_file(
        cls,
        path: str | os.PathLike[str],
        config: str | os.PathLike[str] | None = None,
        *,
        preset: str | os.PathLike[str] | Graph | None = None,
        torch_dtype: Any = None,
        **kwargs: Any,
    ) -> "Pipeline":
        """Build a pipeline from one SD 1.x / 2.x / SDXL checkpoint file (see `diffblocks.single_file`).

        Offline and without ``config`` for the standard families; ``config`` (a diffusers pipeline
        folder) supplies component configs; ``allow_pickle=True`` admits ``.ckpt`` files. A file
        holding one model (a Flux transformer, a UNet, a VAE; also GGUF) replaces that component
        of the pipeline in ``config``.
        """
        from .single_file.pipeline import read_pipeline_file, single_component  # on use: keeps plain loads lean

        if torch_dtype is None:  # one dtype per pipeline, as from_pretrained (module docstring)
            torch_dtype = torch.get_default_dtype()
        component = single_component(path, config, torch_dtype=torch_dtype, **kwargs)
        if component is not None:
            pipe = cls.from_pretrained(config, preset=preset, torch_dtype=torch_dtype)  # type: ignore[arg-type]
            pipe.components.set(*component)
            return pipe
        parts = read_pipeline_file(path, config, torch_dtype=torch_dtype, **kwargs)
        manager = ComponentsManager(torch_dtype=torch_dtype)
        for name, obj in parts.components.items():
            manager.set(name, obj)
        manager.config.update(parts.index_config)
        graph = _graph_from(preset if preset is not None else parts.preset)
        _apply_index_config(graph, manager.config)
        graph.validate(components=manager)
        return cls(graph, manager, source=os.fspath(path))

    def save_single_file(self, path: str | os.PathLike[str]) -> Path:
        """Write UNet, VAE and text encoder(s) as one original-layout (LDM / Stability) safetensors file."""
        from .single_file.pipeline import write_pipeline_file

        return write_pipeline_file({name: self.components[name] for name in self.components}, path)

    def compile(self, mode: str | None = None, components: Iterable[str] | None = None) -> dict[str, int]:
        """Regional ``torch.compile`` of the denoiser's repeated blocks (opt-in; outputs match eager
        to float rounding); see ``diffblocks.models.compiling``. Returns name -> blocks compiled.

        Meant for GPUs: on a CPU in fp32 the eager models' oneDNN routing
        (``diffblocks.models.kernels``) measured faster than compiled regions (docs/performance.md)."""
        return compile_components(self.components, mode, components)

    # -- schedulers ---------------------------------------------------------------------------
    def set_scheduler(self, name_or_scheduler: Any) -> None:
        """Swap the scheduler: a sampler name users know ("DPM++ 2M Karras", "Euler a", ...),
        or a scheduler object. The new one keeps the model's training config (betas, steps)."""
        current = self.components["scheduler"]
        if isinstance(name_or_scheduler, str):
            from .schedulers import scheduler_from_name

            try:
                scheduler = scheduler_from_name(name_or_scheduler, current.config)
            except ValueError as err:
                raise InputError(f"scheduler: {err}") from None
        else:
            scheduler = name_or_scheduler
        pipeline_io.check_sampler_fits(scheduler, current, name_or_scheduler)
        self.components.set("scheduler", scheduler)  # type: ignore[union-attr]

    # -- many images --------------------------------------------------------------------------
    def generate_many(
        self, rows: Any, out_dir: str | os.PathLike[str], *, batch_size: int = 1, base_seed: int = 0, **options: Any
    ) -> Any:
        """One PNG per row in ``out_dir`` plus ``manifest.jsonl`` and ``grid.png``; resumable.

        ``rows`` are :class:`~diffblocks.batch.BatchRow` s or dicts of prompt-file columns
        (``{"prompt": ..., "seed": ..., "steps": ...}``); see :func:`diffblocks.batch.generate_many`
        for the options (``distribution``, ``run_settings``, ``progress``)."""
        from .batch import BatchRow, generate_many, rows_from_records

        rows = list(rows)
        if not all(isinstance(r, BatchRow) for r in rows):
            rows = rows_from_records(rows, base_seed=base_seed)
        return generate_many(self, rows, out_dir, batch_size=batch_size, **options)

    # -- saving -------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike[str], *, save_weights: bool = False) -> Path:
        """Write ``graph.json`` and ``modular_model_index.json`` (and, with ``save_weights=True``,
        each loaded-or-loadable component in its own subfolder). Scheduler configs are always
        written (they are tiny) so the folder is self-describing. Loaded LoRAs and embeddings are
        recorded in ``adapters.json`` (file, sha256, name, weight) with copies under ``adapters/``.

        With ``save_weights=True`` and a stock preset graph (``sd15``, ``sdxl`` and their
        workflows, unswapped), the classic ``model_index.json`` is written too, so diffusers'
        ``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline.from_pretrained`` open the folder.

        The save is atomic: everything is written into a temporary sibling folder that replaces
        ``save_directory`` at the end; until then the old folder stays complete and loadable.
        Saving into the folder the pipeline was loaded from works: what the new folder needs
        from the old one is loaded (or written) before the swap. Files of an existing folder
        that the save does not write (a model card, unused components) are kept.
        """
        manager = self.components
        if not isinstance(manager, ComponentsManager):
            raise TypeError("save_pretrained needs the pipeline's components in a ComponentsManager")
        classic = _stock_pipeline_class(self.graph, manager.config) if save_weights else None
        saved = sorted(manager.loaded) if save_weights else ()
        return pipeline_io.save_pipeline(
            self.graph, manager, Path(save_directory), save_weights=save_weights, classic_class=classic,
            also=lambda folder: write_adapter_record(folder, manager, saved_weights=saved),
        )

    def push_to_hub(self, repo_id: str, *, weights: bool = False, **options: Any) -> str:
        """Push ``graph.json`` + ``modular_model_index.json`` pinned to the commits the weights come
        from (the weights too with ``weights=True``) and a model card, as ONE commit; options:
        commit_message, private, token, branch. Returns the commit sha."""
        return push_pipeline(self, repo_id, weights=weights, **options)

    def __repr__(self) -> str:
        return f"Pipeline(graph={self.graph.name!r}, source={self.source!r}, components={sorted(self.components)})"


def _apply_index_config(graph: Graph, config: Mapping[str, Any]) -> None:
    """Index config values (e.g. SDXL's ``force_zeros_for_empty_prompt``) set the config key of
    the same name on every top-level node that declares it: the model folder knows best."""
    for node, block in list(graph.nodes.items()):
        values = {k: config[k] for k in block.config_fields if k in config}
        if values and any(block.config.get(k) != v for k, v in values.items()):
            graph.replace(node, block.with_config(**values))


def _stock_pipeline_class(graph: Graph, config: Mapping[str, Any]) -> str | None:
    """diffusers' pipeline class when ``graph`` is a stock preset as shipped (e.g. ``sd15`` or
    ``sdxl-img2img``, configured from the index), else ``None``: a swapped graph is ours only."""
    family = family_of(graph.name)
    if family is None:
        return None
    stock = load_preset(graph.name)
    _apply_index_config(stock, config)
    if stock.to_json() != graph.to_json():
        return None
    preset = graph.name if graph.name in family.presets else graph.name.rpartition("-")[0]
    return next((cls for cls, name in family.pipeline_classes.items() if name == preset), None)
