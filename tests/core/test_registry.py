"""The block registry: names, duplicates, plugins from entry points, predicates."""

from __future__ import annotations

from importlib import metadata

import pytest

from diffblocks.blocks import block
from diffblocks.registry import (
    UnknownBlockError,
    get_block,
    get_predicate,
    list_blocks,
    list_predicates,
    register_block,
    register_predicate,
    unregister_block,
)
from diffblocks.registry import blocks as registry

from . import helpers as h


def test_registered_names():
    assert get_block("core_inc") is h.inc
    assert isinstance(get_block("core_offset"), h.CoreOffset)
    names = list_blocks()
    assert "core_inc" in names and list(names) == sorted(names)


def test_unknown_name_suggests():
    with pytest.raises(UnknownBlockError) as err:
        get_block("core_incc")
    assert "did you mean core_inc" in str(err.value)
    assert isinstance(err.value, KeyError)


def test_duplicate_name_with_another_implementation_is_an_error():
    with pytest.raises(ValueError, match="already registered"):

        @block("core_inc")
        def other(x: float) -> float:
            return x


def test_reregistering_the_same_function_is_fine_and_replace_works():
    register_block(h.inc)

    @block("t_reg_tmp", register=False)
    def tmp(x: float) -> float:
        return x

    try:
        register_block(tmp)
        register_block(h.mul, name="t_reg_tmp", replace=True)
        assert get_block("t_reg_tmp") is h.mul
    finally:
        unregister_block("t_reg_tmp")
    with pytest.raises(TypeError):
        register_block(object())


def test_entry_point_plugins_are_discovered_lazily_once(monkeypatch):
    import types
    import sys

    module = types.ModuleType("t_plugin_mod")

    @block("t_plugin_block", register=False)
    def plugin_block(x: float) -> float:
        return x * 3

    module.plugin_block = plugin_block
    sys.modules["t_plugin_mod"] = module
    eps = metadata.EntryPoints([
        metadata.EntryPoint(name="t_plugin_block", value="t_plugin_mod:plugin_block", group=registry.ENTRY_POINT_GROUP),
        metadata.EntryPoint(name="t_broken", value="no_such_module_xyz:thing", group=registry.ENTRY_POINT_GROUP),
    ])
    calls = []

    def fake_entry_points(group=None):
        calls.append(group)
        return eps if group == registry.ENTRY_POINT_GROUP else metadata.EntryPoints([])

    monkeypatch.setattr(registry.metadata, "entry_points", fake_entry_points)
    monkeypatch.setattr(registry, "_discovered", False)
    try:
        with pytest.warns(UserWarning, match="t_broken"):
            assert get_block("t_plugin_block")(x=2.0) == 6.0
        get_block("t_plugin_block")
        list_blocks()
        assert calls.count(registry.ENTRY_POINT_GROUP) == 1
    finally:
        unregister_block("t_plugin_block")
        sys.modules.pop("t_plugin_mod", None)


def test_predicates():
    assert get_predicate("core_bigger")({"x": 1000}) == "big"
    assert "core_bigger" in list_predicates()
    with pytest.raises(UnknownBlockError):
        get_predicate("nope")
    with pytest.raises(ValueError):

        @register_predicate("core_bigger")
        def clash(present):
            return "x"
