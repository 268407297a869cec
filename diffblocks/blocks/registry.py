"""The block registry's store: registered names -> blocks, and named Switch predicates.

This is machinery: it knows nothing of families or plugins. Lookups that may need to find blocks
first (the built-in families, plugins) are ``diffblocks.registry``'s ``get_block`` / ``list_blocks``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import Block
from .errors import GraphError

__all__ = [
    "register_block", "unregister_block", "registered_block", "registered_blocks",
    "register_predicate", "registered_predicate", "registered_predicates", "block_origin", "UnknownBlockError",
]

_BLOCKS: dict[str, Block] = {}
_PREDICATES: dict[str, Callable[[dict[str, Any]], str]] = {}


class UnknownBlockError(GraphError, KeyError):
    """A name nobody registered was looked up."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return GraphError.__str__(self)


def block_origin(obj: Any) -> tuple[str, str]:
    """(module, qualified name) of a block's implementation: what makes two registrations "the same"."""
    fn = getattr(obj, "fn", None)
    target = fn if fn is not None else type(obj)
    return (getattr(target, "__module__", "?"), getattr(target, "__qualname__", "?"))


def register_block(obj: Any = None, *, name: str | None = None, replace: bool = False) -> Any:
    """Register a block under its name. Use as ``@register_block`` on a Block subclass, or call
    with a block instance. Registering a *different* implementation under a taken name is an
    error (``replace=True`` overrides); re-registering the same one (a module reload) is fine.
    Returns what it was given, so it works as a decorator.
    """

    def do(target: Any) -> Any:
        instance = target() if isinstance(target, type) and issubclass(target, Block) else target
        if not isinstance(instance, Block):
            raise TypeError(f"register_block expects a Block or Block subclass, got {target!r}")
        key = name or instance.name
        if not key:
            raise TypeError(f"block {instance!r} has no name; set name = '...'")
        if instance.name != key:
            instance.name = key  # type: ignore[misc]
        old = _BLOCKS.get(key)
        if old is not None and not replace and block_origin(old) != block_origin(instance):
            where = ".".join(block_origin(old))
            raise ValueError(f"block name {key!r} is already registered by {where}; pick another name")
        _BLOCKS[key] = instance
        return target

    if obj is None:
        return do
    return do(obj)


def unregister_block(name: str) -> None:
    """Remove a name from the registry (tests, plugin reloads)."""
    _BLOCKS.pop(name, None)


def registered_block(name: str) -> Block | None:
    """The block registered as ``name`` so far, or None (no discovery)."""
    return _BLOCKS.get(name)


def registered_blocks() -> dict[str, Block]:
    """Every block registered so far, sorted by name (no discovery)."""
    return dict(sorted(_BLOCKS.items()))


def register_predicate(name: str) -> Callable[[Callable[..., str]], Callable[..., str]]:
    """Register a Switch predicate: ``fn(present_inputs: dict) -> branch name``."""

    def do(fn: Callable[..., str]) -> Callable[..., str]:
        old = _PREDICATES.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(f"predicate name {name!r} is already registered by {old.__module__}.{old.__qualname__}")
        _PREDICATES[name] = fn
        return fn

    return do


def registered_predicate(name: str) -> Callable[[dict[str, Any]], str] | None:
    return _PREDICATES.get(name)


def registered_predicates() -> list[str]:
    return sorted(_PREDICATES)
