"""A function block's config default is declared once: the signature's, or a config= dict that agrees."""

from __future__ import annotations

import pytest

from diffblocks.blocks import block


def test_config_names_take_the_signature_default():
    @block("t_cfg_names", register=False, config=["k"])
    def scaled(x: float, k: float = 2.0) -> float:
        return x * k

    assert scaled.config["k"] == 2.0 and "k" not in scaled.inputs
    assert scaled(x=3.0) == 6.0
    assert scaled.with_config(k=5.0)(x=3.0) == 15.0


def test_config_dict_that_disagrees_with_the_signature_is_an_error():
    with pytest.raises(TypeError, match=r"config 'k' defaults to 2.0 in config= but to 99.0"):
        @block("t_cfg_conflict", register=False, config={"k": 2.0})
        def scaled(x: float, k: float = 99.0) -> float:
            return x * k


def test_config_dict_that_agrees_or_fills_a_missing_default_is_fine():
    @block("t_cfg_agree", register=False, config={"k": 2.0})
    def agree(x: float, k: float = 2.0) -> float:
        return x * k

    @block("t_cfg_fill", register=False, config={"k": 3.0})
    def fill(x: float, k: float) -> float:
        return x * k

    assert agree(x=1.0) == 2.0 and fill(x=1.0) == 3.0


def test_config_name_without_any_default_is_an_error():
    with pytest.raises(TypeError, match="needs a default"):
        @block("t_cfg_nodefault", register=False, config=["k"])
        def scaled(x: float, k: float) -> float:
            return x * k
    with pytest.raises(TypeError, match="not a parameter"):
        @block("t_cfg_unknown", register=False, config=["q"])
        def other(x: float) -> float:
            return x
