"""Declaring blocks: function form, class form, ports, config, components, direct calls."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import pytest
import torch

from diffblocks.blocks import (
    Block,
    GraphError,
    Images,
    Input,
    Latents,
    NoisePred,
    Output,
    Outputs,
    PooledEmbeds,
    PromptEmbeds,
    RunContext,
    Seed,
    SemanticTensor,
    block,
    is_compatible,
    type_name,
)
from diffblocks.blocks.types import Generator, validate_value

from . import helpers as h


def test_function_block_declares_ports_from_signature():
    @block("t_sig", register=False)
    def fn(
        latents: Latents,
        factor: float = Input(2.0, "how much"),
        note: Annotated[str, "a note"] = "",
        mask: Optional[torch.Tensor] = None,
        extra: int | None = None,
    ) -> Latents:
        """Scale.

        Args:
            latents: what to scale.
        """
        return latents * factor

    assert list(fn.inputs) == ["latents", "factor", "note", "mask", "extra"]
    assert fn.inputs["latents"].required and fn.inputs["latents"].description == "what to scale."
    assert fn.inputs["factor"].default == 2.0 and fn.inputs["factor"].description == "how much"
    assert fn.inputs["note"].description == "a note"
    assert fn.inputs["extra"].default is None and not fn.inputs["extra"].required
    assert list(fn.outputs) == ["latents"] and fn.outputs["latents"].type is Latents
    assert fn.description == "Scale."
    assert torch.equal(fn(latents=torch.ones(2)), torch.full((2,), 2.0))


def test_multiple_outputs_dict_and_tuple():
    out = h.pair(x=3.0)
    assert out == {"a": 3.0, "b": -3.0} and out.a == 3.0

    @block("t_two", register=False)
    def two(x: float) -> Outputs(sum=Output(float, "x+1"), diff=float):
        return {"sum": x + 1, "diff": x - 1}

    assert two.outputs["sum"].description == "x+1"
    assert two(x=1.0) == {"sum": 2.0, "diff": 0.0}


def test_components_config_and_context_are_not_inputs():
    assert set(h.encode.inputs) == {"prompt"}
    assert h.encode.components["encoder"].expected_name == "torch.nn.Linear"
    assert set(h.scale.inputs) == {"latents"} and h.scale.config == {"factor": 1.0}
    assert set(h.momentum.inputs) == {"latents"} and h.momentum.context_param == "ctx"
    lin = torch.nn.Linear(2, 3)
    out = h.encode(components={"encoder": lin}, prompt="ab")
    assert out.shape == (1, 3)


def test_with_config_copies_and_validates():
    doubled = h.scale.with_config(factor=3.0)
    assert doubled.config == {"factor": 3.0} and h.scale.config == {"factor": 1.0}
    assert torch.equal(doubled(latents=torch.ones(1)), torch.full((1,), 3.0))
    with pytest.raises(GraphError) as err:
        h.scale.with_config(nope=1)
    assert err.value.problems[0].kind == "bad_config" and "nope" in str(err.value)
    with pytest.raises(GraphError) as err:
        h.scale.with_config(factor="lots")
    assert err.value.problems[0].kind == "bad_config"


def test_class_form():
    blk = h.CoreOffset()
    assert blk.name == "core_offset" and blk.version == 2
    assert blk.inputs["x"].description == "the value."
    assert blk(x=1.0) == 11.0
    assert blk.with_config(offset=1.0)(x=1.0) == 2.0


def test_class_form_with_pydantic_inputs_and_components():
    from pydantic import BaseModel, Field

    class Enc(Block):
        name = None
        components = {"encoder": "torch.nn.Linear"}

        class Inputs(BaseModel):
            value: float = Field(1.0, description="input value")

        class Outputs:
            prompt_embeds: PromptEmbeds

        def forward(self, value, encoder):
            return encoder(torch.full((1, 2), value))

    enc = Enc()
    assert enc.inputs["value"].default == 1.0 and enc.inputs["value"].description == "input value"
    assert enc(components={"encoder": torch.nn.Linear(2, 5)}).shape == (1, 5)


def test_declaration_errors_are_early_and_clear():
    with pytest.raises(TypeError, match="return annotation"):
        block("t_noret", register=False)(lambda x: x)
    with pytest.raises(TypeError, match="component 'unet' is not a parameter"):

        @block("t_badc", register=False, components={"unet": "x.Y"})
        def f(x: float) -> float:
            return x

    with pytest.raises(TypeError, match="ordinary keyword"):

        @block("t_var", register=False)
        def g(*xs: float) -> float:
            return 0.0

    with pytest.raises(TypeError, match="at least one output"):

        class NoOut(Block):
            def forward(self):
                return None


def test_semantic_type_compatibility():
    assert is_compatible(Latents, Latents)
    assert is_compatible(Latents, torch.Tensor)
    assert is_compatible(torch.Tensor, Latents)
    assert is_compatible(Latents, Any) and is_compatible(Any, PromptEmbeds)
    assert not is_compatible(PromptEmbeds, Latents)
    assert not is_compatible(PooledEmbeds, PromptEmbeds)
    assert is_compatible(Latents, Optional[Latents])
    assert is_compatible(int, float) and not is_compatible(float, int)
    assert is_compatible(list[int], list[int]) and not is_compatible(list[str], list[int])
    assert is_compatible(Optional[Latents], Latents)  # an optional value may feed; None is checked at run time
    assert not is_compatible(str, Latents)
    assert is_compatible(torch.Tensor, Images) and is_compatible(list, Images) and not is_compatible(str, Images)
    assert type_name(Optional[Latents]) == "Latents | None"
    assert type_name(list[int]) == "list[int]"


def test_new_semantic_type_is_one_class():
    class DepthMap(SemanticTensor):
        """Depth."""

    assert is_compatible(DepthMap, torch.Tensor) and not is_compatible(DepthMap, Latents)
    assert isinstance(torch.zeros(1), DepthMap)
    with pytest.raises(TypeError):
        DepthMap()


def test_boundary_validation_of_values():
    assert validate_value(float, 1) == 1.0
    x = torch.zeros(1)
    assert validate_value(Latents, x) is x
    assert validate_value(Seed, 3) == 3
    assert isinstance(validate_value(Generator, torch.Generator()), torch.Generator)
    assert validate_value(Images, [1, 2]) == [1, 2]
    with pytest.raises(ValueError, match="expects Latents"):
        validate_value(Latents, "not a tensor")
    with pytest.raises(ValueError):
        validate_value(int, "abc")


def test_block_instance_is_shared_safely():
    """with_config never mutates the original, and blocks hold no run state."""
    a = h.scale.with_config(factor=5.0)
    b = h.scale.with_config(factor=7.0)
    x = torch.ones(1)
    assert a(latents=x).item() == 5.0 and b(latents=x).item() == 7.0 and h.scale(latents=x).item() == 1.0


def test_runcontext_outside_loop():
    @block("t_ctx", register=False)
    def f(x: float, ctx: RunContext) -> float:
        assert ctx.step is None and ctx.total is None and ctx.steps == ()
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        return x + ctx.state["n"]

    assert f(x=0.0) == 1.0
    assert f(x=0.0) == 1.0  # state is per run


def test_noise_pred_types_differ_from_latents():
    assert not is_compatible(NoisePred, Latents)


def test_class_form_with_run_context():
    class Counter(Block):
        class Inputs:
            x: float

        class Outputs:
            x: float

        def forward(self, x: float, ctx: RunContext) -> float:
            ctx.state["n"] = ctx.state.get("n", 0) + 1
            return x + ctx.state["n"]

    blk = Counter()
    assert blk.context_param == "ctx" and set(blk.inputs) == {"x"}
    assert blk(x=1.0) == 2.0
