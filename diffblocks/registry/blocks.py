"""The block registry: registered names -> blocks, plus named Switch predicates.

Built-in stage blocks (every module of ``diffblocks.blocks`` that is not core) and plugin
blocks from the entry-point group ``diffblocks.blocks`` are imported lazily, once, the first
time a name is looked up or the registry is listed.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import warnings
from collections.abc import Callable
from importlib import metadata
from typing import Any

from ..blocks.base import Block
from ..blocks.errors import GraphError, Problem

__all__ = [
    "ENTRY_POINT_GROUP",
    "register_block",
    "unregister_block",
    "get_block",
    "list_blocks",
    "register_predicate",
    "get_predicate",
    "list_predicates",
    "UnknownBlockError",
]

ENTRY_POINT_GROUP = "diffblocks.blocks"
#: Modules of diffblocks.blocks that define the machinery, not blocks.
CORE_MODULES = frozenset({"base", "types", "ports", "context", "errors", "function"})

_BLOCKS: dict[str, Block] = {}
_PREDICATES: dict[str, Callable[[dict[str, Any]], str]] = {}
_discovered = False


class UnknownBlockError(GraphError, KeyError):
    """``get_block`` was asked for a name nobody registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return GraphError.__str__(self)


def _origin(obj: Any) -> tuple[str, str]:
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
        if old is not None and not replace and _origin(old) != _origin(instance):
            where = ".".join(_origin(old))
            raise ValueError(f"block name {key!r} is already registered by {where}; pick another name")
        _BLOCKS[key] = instance
        return target

    if obj is None:
        return do
    return do(obj)


def unregister_block(name: str) -> None:
    """Remove a name from the registry (tests, plugin reloads)."""
    _BLOCKS.pop(name, None)


def _discover() -> None:
    """Import built-in stage modules and entry-point plugins, once."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    import diffblocks.blocks as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name in CORE_MODULES or info.name.startswith("_"):
            continue
        try:
            importlib.import_module(f"diffblocks.blocks.{info.name}")
        except Exception as exc:  # one broken module must not hide every other block
            warnings.warn(f"diffblocks: cannot import built-in blocks from diffblocks.blocks.{info.name}: {exc}")
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception as exc:
            warnings.warn(f"diffblocks: cannot load plugin entry point {ep.name} = {ep.value}: {exc}")
            continue
        if isinstance(loaded, Block) or (isinstance(loaded, type) and issubclass(loaded, Block)):
            instance = loaded if isinstance(loaded, Block) else None
            key = (instance.name if instance else loaded.name) or ep.name
            if key not in _BLOCKS:
                register_block(loaded, name=key)


def get_block(name: str) -> Block:
    """The registered block called ``name`` (default config). ``UnknownBlockError`` otherwise."""
    found = _BLOCKS.get(name)
    if found is None:
        _discover()
        found = _BLOCKS.get(name)
    if found is None:
        close = difflib.get_close_matches(name, list(_BLOCKS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownBlockError([Problem("unknown_block", f"no block registered as {name!r}{hint}")])
    return found


def list_blocks() -> dict[str, Block]:
    """Every registered block, sorted by name (built-ins and plugins included)."""
    _discover()
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


def get_predicate(name: str) -> Callable[[dict[str, Any]], str]:
    fn = _PREDICATES.get(name)
    if fn is None:
        _discover()
        fn = _PREDICATES.get(name)
    if fn is None:
        raise UnknownBlockError([Problem("unknown_block", f"no Switch predicate registered as {name!r}")])
    return fn


def list_predicates() -> list[str]:
    _discover()
    return sorted(_PREDICATES)
