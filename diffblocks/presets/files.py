"""Preset lookup: the families' presets, plus graph files in the folders named by the environment
variable ``DIFFBLOCKS_PRESET_PATH`` (separated by ``os.pathsep``; a file there wins over a family
preset of the same name)."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path

from ..blocks.errors import GraphError, Problem
from ..graph import Graph
from .family import Family

__all__ = ["PRESET_PATH_ENV", "extra_preset_files", "list_preset_names", "find_preset", "read_preset"]

PRESET_PATH_ENV = "DIFFBLOCKS_PRESET_PATH"


def extra_preset_files() -> dict[str, Path]:
    """``{name: file}`` for the JSON files in the folders of ``DIFFBLOCKS_PRESET_PATH``; earlier folders win."""
    found: dict[str, Path] = {}
    for folder in (Path(p) for p in os.environ.get(PRESET_PATH_ENV, "").split(os.pathsep) if p):
        if folder.is_dir():
            for path in sorted(folder.glob("*.json")):
                found.setdefault(path.stem, path)
    return found


def list_preset_names(families: Mapping[str, Family]) -> list[str]:
    """Every preset name: the families' presets and workflows, and the extra files."""
    names = set(extra_preset_files())
    for family in families.values():
        names.update(family.preset_names())
    return sorted(names)


def find_preset(name: str, families: Mapping[str, Family]) -> tuple[Path, Family | None, tuple[str, ...] | None]:
    """Where preset ``name`` comes from: ``(file, family, workflow inputs)``; the family is None
    for an extra file, the workflow inputs None unless ``name`` is ``<preset>-<workflow>``.
    ``GraphError`` naming close matches for an unknown name."""
    extra = extra_preset_files()
    if name in extra:
        return extra[name], None, None
    for family in families.values():
        if name in family.presets:
            return family.preset_file(name), family, None
        preset, _, workflow = name.rpartition("-")
        if preset in family.presets and workflow in family.workflows:
            return family.preset_file(preset), family, family.workflows[workflow]
    known = list_preset_names(families)
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; presets: {', '.join(known) or 'none'}"
    raise GraphError([Problem("unknown_block", f"no preset named {name!r}{hint}")], title="unknown preset")


def read_preset(name: str, families: Mapping[str, Family]) -> Graph:
    """The preset graph called ``name`` (validated), with its workflow selected when it names one."""
    path, _, workflow = find_preset(name, families)
    graph = Graph.from_json(path)
    if workflow is None:
        return graph
    selected = graph.select(**{input_name: True for input_name in workflow})
    selected.name = name
    return selected
