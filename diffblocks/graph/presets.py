"""Preset graphs: the JSON files in ``diffblocks/presets/`` (plus folders named in the
environment variable ``DIFFBLOCKS_PRESET_PATH``, separated by ``os.pathsep``)."""

from __future__ import annotations

import os
from pathlib import Path

from ..blocks.errors import GraphError, Problem
from .graph import Graph

__all__ = ["PRESET_PATH_ENV", "preset_dirs", "list_presets", "preset_path", "load_preset"]

PRESET_PATH_ENV = "DIFFBLOCKS_PRESET_PATH"


def preset_dirs() -> list[Path]:
    """Where presets are looked for: extra folders from the environment first, then the package's."""
    extra = [Path(p) for p in os.environ.get(PRESET_PATH_ENV, "").split(os.pathsep) if p]
    return [*extra, Path(__file__).resolve().parents[1] / "presets"]


def list_presets() -> dict[str, Path]:
    """``{preset name: file}``, the name being the file name without ``.json``. Earlier folders win."""
    found: dict[str, Path] = {}
    for folder in preset_dirs():
        if folder.is_dir():
            for path in sorted(folder.glob("*.json")):
                found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


def preset_path(name: str) -> Path:
    presets = list_presets()
    if name not in presets:
        import difflib

        close = difflib.get_close_matches(name, list(presets), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; presets: {', '.join(presets) or 'none'}"
        raise GraphError([Problem("unknown_block", f"no preset named {name!r}{hint}")], title="unknown preset")
    return presets[name]


def load_preset(name: str) -> Graph:
    """The preset graph called ``name`` (validated)."""
    return Graph.from_json(preset_path(name))
