"""Saving a pipeline folder (atomically, with diffusers' classic index for stock presets), and
the checks a sampler swap must pass. Used by :class:`diffblocks.pipeline.Pipeline`."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .blocks.errors import InputError
from .components import CLASSIC_INDEX, ComponentsManager, ComponentSpec, write_modular_index
from .fileio import atomic_folder, atomic_write_text
from .graph import Graph
from .formats import DIFFUSERS_FORMAT_VERSION

__all__ = ["GRAPH_FILE", "save_pipeline", "check_sampler_fits", "is_flow_matching"]

GRAPH_FILE = "graph.json"


def save_pipeline(
    graph: Graph,
    manager: ComponentsManager,
    out: Path,
    *,
    save_weights: bool,
    classic_class: str | None = None,
    also: Callable[[Path], Any] | None = None,
) -> Path:
    """Write ``out`` as a whole (see ``Pipeline.save_pretrained``); returns ``out``. ``also(folder)``
    writes more files into the new folder before it replaces the old one (e.g. the adapter record)."""
    target = out.expanduser().resolve()
    # Everything the new folder needs is loaded first: a component still to be read lazily from
    # the folder being replaced would find it gone after the swap.
    written: dict[str, Any] = {}
    kept: dict[str, ComponentSpec] = {}
    for name in manager:
        spec = manager.specs.get(name)
        if save_weights or spec is None or spec.config is not None or _is_scheduler(spec) or _inside(spec, target):
            written[name] = manager[name]
        else:
            kept[name] = spec
    for name, component in written.items():
        if not hasattr(component, "save_pretrained"):
            raise TypeError(f"component {name!r} ({type(component).__name__}) cannot be saved")
    config = _plain_config(manager.config)
    with atomic_folder(target) as work:
        specs: dict[str, ComponentSpec] = {}
        hints: dict[str, tuple[str, str]] = {}
        for name in manager:
            if name in kept:
                specs[name] = kept[name]
                continue
            component = written[name]
            component.save_pretrained(work / name)
            spec = manager.specs.get(name)
            hint = spec.type_hint if spec is not None and spec.type_hint and not _is_scheduler(spec) else _type_hint_of(component)
            hints[name] = hint
            # No source written: on reading, the component lives next to its index.
            specs[name] = ComponentSpec(name=name, type_hint=hint, subfolder=name)
        write_modular_index(work, specs, config=config)
        atomic_write_text(work / GRAPH_FILE, graph.to_json() + "\n")
        if classic_class is not None and not kept:
            write_classic_index(work, classic_class, hints, config)
        if also is not None:
            also(work)
        _carry_over(target, work)
    return out


def _carry_over(old: Path, new: Path) -> None:
    """Keep what the old folder held and this save does not write (a model card, a component
    the graph does not use): hard links where the file system allows, else copies."""
    if not old.is_dir():
        return
    for entry in old.iterdir():
        dest = new / entry.name
        if dest.exists() or dest.is_symlink():
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, dest, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, dest)


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def write_classic_index(folder: Path, class_name: str, hints: Mapping[str, tuple[str, str]], config: Mapping[str, Any]) -> Path:
    """diffusers' ``model_index.json``: the pipeline class, config values, ``name: [library, class]``."""
    data: dict[str, Any] = {"_class_name": class_name, "_diffusers_version": DIFFUSERS_FORMAT_VERSION}
    data.update({k: v for k, v in config.items() if not k.startswith("_")})
    for name, (library, cls) in hints.items():
        data[name] = [library, cls]
    return atomic_write_text(folder / CLASSIC_INDEX, json.dumps(data, indent=2) + "\n")


def is_flow_matching(scheduler: Any) -> bool:
    """Whether ``scheduler`` integrates a flow-matching ODE (rather than a VP diffusion)."""
    return type(scheduler).__name__.startswith("FlowMatch")


def check_sampler_fits(new: Any, current: Any, asked: Any) -> None:
    """Refuse a sampler whose process differs from the model's: a flow-matching sampler on an
    epsilon / v-prediction (VP) model, or the reverse, gives noise, not a worse image."""
    if is_flow_matching(new) == is_flow_matching(current):
        return
    from .schedulers import SAMPLER_NAMES

    label = asked if isinstance(asked, str) else type(new).__name__
    fitting = [n for n, (cls, _) in SAMPLER_NAMES.items() if cls.startswith("FlowMatch") == is_flow_matching(current)]
    if is_flow_matching(new):
        kind = current.config.get("prediction_type", "epsilon") if hasattr(current.config, "get") else "epsilon"
        why = f"a flow-matching sampler, but this model is a VP model (prediction_type {kind})"
    else:
        why = "a VP (epsilon / v-prediction) sampler, but this model is flow-matching"
    raise InputError(f"scheduler: {label!r} is {why}: the image would be noise; use one of {', '.join(fitting)}")


def _inside(spec: ComponentSpec, folder: Path) -> bool:
    """Whether ``spec`` reads its files from inside ``folder`` (which is about to be replaced)."""
    if not spec.is_local or spec.source is None:
        return False
    source = Path(spec.source)
    return source == folder or folder in source.parents


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
