"""The layout of graph files: JSON a person reads and edits.

Indented like ``json.dumps(indent=2)``, except that an object or array whose one-line form fits
in ``width`` columns stays on one line, so a node, an edge or a single-target input is one short
line. Only whitespace differs from ``json.dumps``: the parsed document is the same, and the
layout is a pure function of it, so the round trip through ``Graph.from_json`` is exact.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dumps_compact"]


def _one_line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def dumps_compact(value: Any, indent: int = 2, width: int = 100) -> str:
    """``value`` as JSON text, containers folded onto one line where they fit in ``width``."""

    def render(item: Any, level: int, used: int) -> str:
        flat = _one_line(item)
        if not isinstance(item, (dict, list)) or not item or used + len(flat) + 1 <= width:
            return flat
        pad = " " * (indent * (level + 1))
        if isinstance(item, dict):
            lines = []
            for key, sub in item.items():
                prefix = f"{_one_line(key)}: "
                lines.append(pad + prefix + render(sub, level + 1, len(pad) + len(prefix)))
            open_, close = "{", "}"
        else:
            lines = [pad + render(sub, level + 1, len(pad)) for sub in item]
            open_, close = "[", "]"
        return open_ + "\n" + ",\n".join(lines) + "\n" + " " * (indent * level) + close

    return render(value, 0, 0)
