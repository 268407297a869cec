"""Type-hint resolution and the trust policy."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from diffblocks.registry.components import (
    ComponentTypeError,
    builtin_type_hints,
    register_component_class,
    resolve_component_class,
    unregister_component_class,
)
from diffblocks.registry.trust import UntrustedCodeError, load_class_from_file


def test_transformers_allow_list_resolves_to_transformers_classes():
    import transformers

    for name in ("CLIPTextModel", "CLIPTextModelWithProjection", "T5EncoderModel", "CLIPTokenizer", "T5TokenizerFast"):
        assert resolve_component_class("transformers", name) is getattr(transformers, name)
    assert ("transformers", "CLIPTextModel") in builtin_type_hints()


def test_unknown_diffusers_class_is_an_error_naming_the_component():
    with pytest.raises(ComponentTypeError, match="component 'unet'.*NotAModel"):
        resolve_component_class("diffusers", "NotAModel", component="unet")


def test_transformers_class_outside_allow_list_needs_trust():
    with pytest.raises(UntrustedCodeError, match="component 'text_encoder'.*transformers.GPT2Model.*trust_remote_code"):
        resolve_component_class("transformers", "GPT2Model", component="text_encoder")
    import transformers

    assert resolve_component_class("transformers", "GPT2Model", trust_remote_code=True) is transformers.GPT2Model


@pytest.fixture
def side_effect_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable module that records being imported (importing runs code)."""
    name = f"evil_pkg_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent("""
        import builtins
        builtins.DIFFBLOCKS_EVIL_IMPORTED = True
        class Thing:
            pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)
    import builtins

    if hasattr(builtins, "DIFFBLOCKS_EVIL_IMPORTED"):
        del builtins.DIFFBLOCKS_EVIL_IMPORTED


def test_unknown_library_is_refused_before_import(side_effect_module: str):
    import builtins

    with pytest.raises(UntrustedCodeError, match="component 'x'"):
        resolve_component_class(side_effect_module, "Thing", component="x")
    assert side_effect_module not in sys.modules
    assert not hasattr(builtins, "DIFFBLOCKS_EVIL_IMPORTED")
    cls = resolve_component_class(side_effect_module, "Thing", trust_remote_code=True)
    assert cls.__name__ == "Thing" and builtins.DIFFBLOCKS_EVIL_IMPORTED


def test_trusted_but_missing_module_is_an_error():
    with pytest.raises(ComponentTypeError, match="no_such_module_xyz"):
        resolve_component_class("no_such_module_xyz", "Thing", trust_remote_code=True, component="c")


def test_registered_plugin_needs_no_trust():
    class MyEncoder:
        pass

    register_component_class("my_plugin", "MyEncoder", MyEncoder)
    register_component_class("my_plugin", "Counter", "collections:Counter")
    try:
        assert resolve_component_class("my_plugin", "MyEncoder") is MyEncoder
        import collections

        assert resolve_component_class("my_plugin", "Counter") is collections.Counter
    finally:
        unregister_component_class("my_plugin", "MyEncoder")
        unregister_component_class("my_plugin", "Counter")
    with pytest.raises(UntrustedCodeError):
        resolve_component_class("my_plugin", "MyEncoder")
    with pytest.raises(ValueError, match="module:Class|package.module:ClassName"):
        register_component_class("my_plugin", "X", "no_colon_here")


def test_repo_file_runs_only_with_trust(tmp_path: Path):
    import builtins

    code = tmp_path / "my_unet.py"
    code.write_text("import builtins\nbuiltins.DIFFBLOCKS_REPO_CODE_RAN = True\nclass MyUNet:\n    pass\n")
    try:
        with pytest.raises(UntrustedCodeError, match="component 'unet'.*my_unet.py"):
            load_class_from_file(code, "MyUNet", trust_remote_code=False, component="unet")
        assert not hasattr(builtins, "DIFFBLOCKS_REPO_CODE_RAN")
        cls = load_class_from_file(code, "MyUNet", trust_remote_code=True, component="unet")
        assert cls.__name__ == "MyUNet" and builtins.DIFFBLOCKS_REPO_CODE_RAN
        with pytest.raises(ImportError, match="no class 'Missing'"):
            load_class_from_file(code, "Missing", trust_remote_code=True)
    finally:
        if hasattr(builtins, "DIFFBLOCKS_REPO_CODE_RAN"):
            del builtins.DIFFBLOCKS_REPO_CODE_RAN


def test_malformed_hint():
    with pytest.raises(ComponentTypeError, match="two non-empty strings"):
        resolve_component_class("", "X")
