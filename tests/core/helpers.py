"""Tiny numeric blocks for the core tests (no models). Registered once, names prefixed core_."""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from diffblocks.blocks import (
    Block,
    Latents,
    NoisePred,
    Outputs,
    PromptEmbeds,
    RunContext,
    Timestep,
    block,
)
from diffblocks.graph import Graph, Loop
from diffblocks.registry import register_block, register_predicate

CALLS: Counter[str] = Counter()


@block("core_inc", output_name="x")
def inc(x: float, step: float = 1.0) -> float:
    """Add ``step``."""
    CALLS["core_inc"] += 1
    return x + step


@block("core_mul", output_name="x")
def mul(x: float, factor: float = 2.0) -> float:
    CALLS["core_mul"] += 1
    return x * factor


@block("core_pair")
def pair(x: float) -> Outputs(a=float, b=float):
    """Two outputs, returned as a tuple."""
    return x, -x


@block("core_make_latents", output_name="latents")
def make_latents(value: float = 1.0, size: int = 4) -> Latents:
    CALLS["core_make_latents"] += 1
    return torch.full((1, size), float(value))


@block("core_make_embeds", output_name="prompt_embeds")
def make_embeds(value: float = 1.0) -> PromptEmbeds:
    CALLS["core_make_embeds"] += 1
    return torch.full((1, 3), float(value))


@block("core_encode", components={"encoder": "torch.nn.Linear"}, output_name="prompt_embeds")
def encode(encoder: Any, prompt: str) -> PromptEmbeds:
    """Encode a prompt with a component (any callable taking a tensor)."""
    CALLS["core_encode"] += 1
    return encoder(torch.full((1, 2), float(len(prompt))))


@block("core_scale", output_name="latents", config={"factor": 1.0})
def scale(latents: Latents, factor: float) -> Latents:
    CALLS["core_scale"] += 1
    return latents * factor


@block("core_denoise_step")
def denoise_step(latents: Latents, t: Timestep, prompt_embeds: PromptEmbeds) -> Latents:
    """latents <- latents * 0.9 + t * 0.01 + mean(prompt_embeds) * 0.001"""
    CALLS["core_denoise_step"] += 1
    return latents * 0.9 + t * 0.01 + prompt_embeds.mean() * 0.001


@block("core_predict", output_name="noise_pred")
def predict(latents: Latents) -> NoisePred:
    return latents * 0.5


@block("core_noise", memoise=False, output_name="latents")
def noise(latents: Latents, generator: torch.Generator | None = None) -> Latents:
    """Adds fresh noise from a passed generator: a side effect, so not memoisable."""
    CALLS["core_noise"] += 1
    return latents + torch.randn(latents.shape, generator=generator)


@block("core_momentum", output_name="latents")
def momentum(latents: Latents, ctx: RunContext) -> Latents:
    """Averages with the previous step's value kept in the run context."""
    prev = ctx.state.get("prev")
    ctx.state["prev"] = latents
    ctx.run.setdefault("steps_seen", []).append((ctx.step, ctx.total))
    return latents if prev is None else 0.5 * (latents + prev)


@register_block
class CoreOffset(Block):
    """Class-form block: adds a configured offset.

    Args:
        x: the value.
    """

    name = "core_offset"
    version = 2

    class Inputs:
        x: float

    class Outputs:
        x: float

    class Config:
        offset: float = 10.0

    def forward(self, x: float) -> float:
        return x + self.config["offset"]


@register_predicate("core_bigger")
def bigger(present: dict[str, Any]) -> str:
    return "big" if present.get("x", 0) > 100 else "small"


def inc_chain(n: int, name: str = "chain") -> Graph:
    """x -> inc -> inc -> ... (n nodes), exposing x and the final x."""
    return Graph.sequential([(f"n{i}", inc) for i in range(n)], name=name)


def denoise_loop() -> Loop:
    body = Graph("body")
    body.add("step", denoise_step)
    body.expose_input("latents", "step.latents")
    body.expose_input("t", "step.t")
    body.expose_input("prompt_embeds", "step.prompt_embeds")
    body.expose_output("latents", "step.latents")
    return Loop(body, over="timesteps", item="t", carry={"latents": "latents"}, name="denoise")


def txt2img() -> Graph:
    """make_embeds -> denoise loop -> scale; inputs: value, latents, timesteps."""
    g = Graph("toy")
    g.add("embed", make_embeds)
    g.add("init", make_latents)
    g.add("denoise", denoise_loop())
    g.add("decode", scale, config={"factor": 2.0})
    g.connect("embed.prompt_embeds", "denoise.prompt_embeds")
    g.connect("init.latents", "denoise.latents")
    g.connect("denoise.latents", "decode.latents")
    g.expose_input("value", "embed.value")
    g.expose_input("start", "init.value")
    g.expose_input("timesteps", "denoise.timesteps")
    g.expose_output("image", "decode.latents")
    return g


class ToyScheduler:
    """A component with internal state, like a diffusers scheduler after set_timesteps."""

    def __init__(self) -> None:
        self.timesteps: list[int] = []
        self.step_index = 0

    def set_timesteps(self, n: int) -> list[int]:
        self.timesteps = list(range(n, 0, -1))
        self.step_index = 0
        return self.timesteps
