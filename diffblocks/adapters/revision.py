"""The memoisation token of an adapted component.

The graph executor fingerprints a component by its spec, its tensors' in-place versions and
``_diffblocks_revision`` (see ``ComponentsManager.component_fingerprint``). Adapters publish
their state there: equal tokens mean the component computes the same function, so going back
to an earlier weight finds the earlier cached outputs again. A revision the user had set before
the first adapter is kept inside the token and restored when the last adapter goes.
"""

from __future__ import annotations

from typing import Any

from diffblocks.adapters.state import RECORD_ATTR

__all__ = ["publish_revision"]

_BASE = "_diffblocks_base_revision"
_PARTS = (RECORD_ATTR, "_diffblocks_embeddings")


def publish_revision(obj: Any) -> None:
    """Recompute ``obj._diffblocks_revision`` from the adapter state attached to ``obj``."""
    state = obj.__dict__
    if _BASE not in state:
        state[_BASE] = state.get("_diffblocks_revision")
    parts = [state.get(name) for name in _PARTS]
    if all(p is None for p in parts):
        state["_diffblocks_revision"] = state.pop(_BASE)
        return
    tokens = tuple(p.token() if hasattr(p, "token") else p for p in parts)
    state["_diffblocks_revision"] = ("adapters", state[_BASE], tokens)
