"""Progress bars for loops (tqdm), configurable and silenceable."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["make_bar"]


def make_bar(progress: bool | Mapping[str, Any], total: int, desc: str, depth: int) -> Any:
    """A tqdm bar for a loop of ``total`` steps, or ``None`` when progress is off.

    ``progress`` is ``True`` (defaults), ``False`` (silent) or a dict of tqdm keyword arguments
    (e.g. ``{"file": sys.stdout, "leave": False}``). Nested loops get transient bars.
    """
    if not progress:
        return None
    from tqdm.auto import tqdm

    options: dict[str, Any] = {"total": total, "desc": desc, "leave": depth == 0, "position": depth}
    if isinstance(progress, Mapping):
        options.update(progress)
    return tqdm(**options)
