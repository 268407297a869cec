"""Looking blocks up by name: the store in ``diffblocks.blocks.registry`` plus discovery.

On the first lookup that misses (or the first listing), the families are loaded — importing a
family package registers its stage blocks; ``diffblocks.presets.FAMILY_MODULES`` and the
entry-point group ``diffblocks.families`` name them — and so are plugin blocks from the
entry-point group ``diffblocks.blocks``. Families are found by module name, like any plugin,
so this layer does not import the presets package (which builds graphs with ``diffblocks.graph``).
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from collections.abc import Callable
from importlib import metadata
from typing import Any

from ..blocks.base import Block
from ..blocks.errors import Problem
from ..blocks.registry import (
    UnknownBlockError,
    block_origin,
    register_block,
    register_predicate,
    registered_block,
    registered_blocks,
    registered_predicate,
    registered_predicates,
    unregister_block,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "FAMILIES_MODULE",
    "register_block",
    "unregister_block",
    "get_block",
    "list_blocks",
    "register_predicate",
    "get_predicate",
    "list_predicates",
    "UnknownBlockError",
    "block_origin",
]

ENTRY_POINT_GROUP = "diffblocks.blocks"
#: The module whose ``families()`` loads every family (and with it, their blocks).
FAMILIES_MODULE = "diffblocks.presets"

_discovered = False


def _discover() -> None:
    """Load the families and entry-point plugin blocks, once."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    importlib.import_module(FAMILIES_MODULE).families()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception as exc:
            warnings.warn(f"diffblocks: cannot load plugin entry point {ep.name} = {ep.value}: {exc}")
            continue
        if isinstance(loaded, Block) or (isinstance(loaded, type) and issubclass(loaded, Block)):
            instance = loaded if isinstance(loaded, Block) else None
            key = (instance.name if instance else loaded.name) or ep.name
            if registered_block(key) is None:
                register_block(loaded, name=key)


def get_block(name: str) -> Block:
    """The registered block called ``name`` (default config). ``UnknownBlockError`` otherwise."""
    found = registered_block(name)
    if found is None:
        _discover()
        found = registered_block(name)
    if found is None:
        close = difflib.get_close_matches(name, list(registered_blocks()), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownBlockError([Problem("unknown_block", f"no block registered as {name!r}{hint}")])
    return found


def list_blocks() -> dict[str, Block]:
    """Every registered block, sorted by name (built-ins and plugins included)."""
    _discover()
    return registered_blocks()


def get_predicate(name: str) -> Callable[[dict[str, Any]], str]:
    fn = registered_predicate(name)
    if fn is None:
        _discover()
        fn = registered_predicate(name)
    if fn is None:
        raise UnknownBlockError([Problem("unknown_block", f"no Switch predicate registered as {name!r}")])
    return fn


def list_predicates() -> list[str]:
    _discover()
    return registered_predicates()
