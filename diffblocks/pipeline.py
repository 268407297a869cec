"""`Pipeline`: a graph, the components it runs on, and call defaults.

A pipeline is not a class per model family: it is a preset graph (or any graph) plus a
`ComponentsManager`. `Pipeline.from_pretrained(folder_or_repo)` reads the model's index, picks
the preset and declares the components (nothing is loaded until a node needs it)::

    pipe = Pipeline.from_pretrained("path/to/sd-folder")
    image = pipe(prompt="a red circle on the left", seed=0).images[0]
    pipe.graph.replace("denoise.guide", "adaptive_projected_guidance")   # swap one block
    pipe.save_pretrained("my-pipeline")                                 # graph.json + index
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .blocks.errors import GraphError, Problem
from .components import MODULAR_INDEX, ComponentsManager, ComponentSpec, write_modular_index
from .graph import Graph
from .models.compiling import compile_components
from .presets import families, load_preset, preset_for_pipeline_class
from .sharing import GRAPH_FILE, graph_for_pipeline, push_pipeline

__all__ = ["Pipeline", "PipelineOutput", "GRAPH_FILE"]


#: Arguments the pipeline itself takes on top of the graph's inputs.
CALL_OPTIONS = ("seed", "callback", "progress")


@dataclass
class PipelineOutput:
    """What a pipeline call returns: ``images`` plus every other graph output in ``outputs``."""

    images: Any
    outputs: dict[str, Any] = field(default_factory=dict)


def _graph_from(preset: str | os.PathLike[str] | Graph) -> Graph:
    if isinstance(preset, Graph):
        return preset
    path = Path(preset)
    if path.suffix == ".json" and path.is_file():
        return Graph.from_json(path)
    return load_preset(str(preset))


class Pipeline:
    """A graph + a ComponentsManager + defaults for the call.

    Calling the pipeline runs the graph with the given inputs (a ``seed`` becomes a CPU
    ``torch.Generator``); unknown arguments are an error listing the valid ones. The graph keeps
    its memoisation cache between calls, so a second call with a new seed reuses the prompt
    encoding.
    """

    def __init__(
        self,
        graph: Graph,
        components: ComponentsManager | Mapping[str, Any],
        *,
        defaults: Mapping[str, Any] | None = None,
        source: str | None = None,
    ) -> None:
        self.graph = graph
        self.components = components
        self.defaults = dict(defaults or {})
        self.source = source

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
        **manager_kwargs: Any,
    ) -> "Pipeline":
        """Build a pipeline for a model folder or Hub repo.

        The graph is ``preset`` when given (a preset name such as ``"sd15"`` or
        ``"sd15-img2img"``, a graph JSON file, or a Graph); else the ``graph.json`` of the folder or
        Hub repo (at the commit its index was read from; a graph repo's ``code`` files are imported
        only with ``trust_remote_code=True``); else the preset for the index's pipeline class. The graph is
        validated against the declared components before anything is loaded.
        """
        source = os.fspath(path_or_repo)
        manager = components or ComponentsManager(torch_dtype=torch_dtype, device=device, **manager_kwargs)
        index = manager.add_from_index(source, revision=revision)
        graph = _graph_from(preset) if preset is not None else cls._graph_for_index(source, index, manager, revision)
        _apply_index_config(graph, manager.config)
        graph.validate(components=manager)
        return cls(graph, manager, source=source)

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

    def __call__(self, **kwargs: Any) -> PipelineOutput:
        """Run the graph: ``pipe(prompt=..., seed=0, num_inference_steps=20, ...)``.

        ``callback(step, t, carried)`` is called after every denoising step and may return
        replacement values (e.g. ``{"latents": ...}``) or ``diffblocks.graph.STOP``;
        ``progress=False`` silences the progress bar.
        """
        callback: Callable[..., Any] | None = kwargs.pop("callback", None)
        progress = kwargs.pop("progress", True)
        inputs = self._inputs(kwargs)
        result = self.graph.run(
            inputs=inputs,
            components=self.components,
            progress=progress,
            callbacks=[callback] if callback is not None else None,
        )
        outputs = dict(result)
        return PipelineOutput(images=outputs.get("images"), outputs=outputs)

    def compile(self, mode: str | None = None, components: Iterable[str] | None = None) -> dict[str, int]:
        """Regional ``torch.compile`` of the denoiser's repeated blocks (opt-in; outputs match eager
        to float rounding); see ``diffblocks.models.compiling``. Returns name -> blocks compiled."""
        return compile_components(self.components, mode, components)

    # -- schedulers ---------------------------------------------------------------------------
    def set_scheduler(self, name_or_scheduler: Any) -> None:
        """Swap the scheduler: a sampler name users know ("DPM++ 2M Karras", "Euler a", ...),
        or a scheduler object. The new one keeps the model's training config (betas, steps)."""
        if isinstance(name_or_scheduler, str):
            from .schedulers import scheduler_from_name

            scheduler = scheduler_from_name(name_or_scheduler, self.components["scheduler"].config)
        else:
            scheduler = name_or_scheduler
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
        written (they are tiny) so the folder is self-describing."""
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        manager = self.components
        if not isinstance(manager, ComponentsManager):
            raise TypeError("save_pretrained needs the pipeline's components in a ComponentsManager")
        specs: dict[str, ComponentSpec] = {}
        for name in manager:
            spec = manager.specs.get(name)
            local = save_weights or spec is None or spec.config is not None or _is_scheduler(spec)
            if local:
                component = manager[name]
                if not hasattr(component, "save_pretrained"):
                    raise TypeError(f"component {name!r} ({type(component).__name__}) cannot be saved")
                component.save_pretrained(out / name)
                hint = spec.type_hint if spec is not None and spec.type_hint else _type_hint_of(component)
                # No source written: on reading, the component lives next to its index.
                spec = ComponentSpec(name=name, type_hint=hint, subfolder=name)
            specs[name] = spec
        write_modular_index(out, specs, config=_plain_config(manager.config))
        tmp = out / (GRAPH_FILE + ".tmp")
        tmp.write_text(self.graph.to_json() + "\n", encoding="utf-8")
        tmp.replace(out / GRAPH_FILE)
        return out

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


def _is_scheduler(spec: ComponentSpec) -> bool:
    from .schedulers import SCHEDULER_CLASSES

    return spec.type_hint is not None and spec.type_hint[1] in SCHEDULER_CLASSES


def _type_hint_of(component: Any) -> tuple[str, str]:
    library = type(component).__module__.split(".")[0]
    return ("diffusers" if library == "diffblocks" else library, type(component).__name__)


def _plain_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Index config values that survive JSON (others are dropped rather than mangled)."""
    out = {}
    for key, value in config.items():
        try:
            json.dumps(value)
        except TypeError:
            continue
        out[key] = value
    return out
