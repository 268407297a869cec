"""Registries: block names -> blocks (``blocks.py``), (library, class) -> component classes
(``components.py``), and the plugin entry-point group ``diffblocks.blocks``."""

from .blocks import (
    ENTRY_POINT_GROUP,
    UnknownBlockError,
    get_block,
    get_predicate,
    list_blocks,
    list_predicates,
    register_block,
    register_predicate,
    unregister_block,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "UnknownBlockError",
    "get_block",
    "get_predicate",
    "list_blocks",
    "list_predicates",
    "register_block",
    "register_predicate",
    "unregister_block",
]
