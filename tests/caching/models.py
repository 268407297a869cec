"""Tiny random models and a custom Python denoise graph (a Loop over a two-node body) for the
step-cache tests: the caches are swapped in with one ``replace``, as a user would."""

from __future__ import annotations

from typing import Any

import torch

from diffblocks.blocks.function import block
from diffblocks.blocks.types import Latents, NoisePred, Timestep
from diffblocks.graph import Graph, Loop
from diffblocks.models.flux import FluxTransformer2DModel
from diffblocks.models.unet_2d_condition import UNet2DConditionModel
from diffblocks.presets import families

from tests.models.tiny import SD15, SDXL, randomize_

families()  # registers predict_noise / predict_flow and the cache blocks

STEPS = 8


@block("test_caching_euler", version=1)
def euler(latents: Latents, noise_pred: NoisePred, t: Timestep) -> Latents:
    """A plain Euler-like update, so each step's input depends on the previous prediction."""
    return latents - 0.1 * noise_pred


def unet(config: dict[str, Any] = SD15) -> UNet2DConditionModel:
    torch.manual_seed(0)
    model = UNet2DConditionModel(config).eval()
    randomize_(model, 1)
    return model


def flux() -> FluxTransformer2DModel:
    torch.manual_seed(0)
    model = FluxTransformer2DModel(in_channels=4, num_layers=2, num_single_layers=2, attention_head_dim=16,
                                   num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                                   axes_dims_rope=(4, 4, 8)).eval()
    randomize_(model, 1)
    return model


def unet_graph(sdxl: bool = False) -> Graph:
    """``latents`` -> Loop(predict_noise -> euler) over ``timesteps``."""
    body = Graph("body")
    body.add("predict", "predict_noise")
    body.add("step", "test_caching_euler")
    body.connect("predict.noise_pred", "step.noise_pred")
    body.expose_input("latents", "predict.sample", "step.latents")
    body.expose_input("t", "predict.t", "step.t")
    body.expose_input("encoder_hidden_states", "predict.encoder_hidden_states")
    if sdxl:
        body.expose_input("text_embeds", "predict.text_embeds")
        body.expose_input("time_ids", "predict.time_ids")
    body.expose_output("latents", "step.latents")
    g = Graph("custom_unet")
    g.add("denoise", Loop(body, over="timesteps", item="t", carry={"latents": "latents"}))
    for name in body.inputs:
        if name not in ("latents", "t"):
            g.expose_input(name, f"denoise.{name}")
    g.expose_input("latents", "denoise.latents")
    g.expose_input("timesteps", "denoise.timesteps")
    g.expose_output("latents", "denoise.latents")
    return g.validate()


def unet_inputs(sdxl: bool = False) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    inputs: dict[str, Any] = {
        "latents": torch.randn(2, 4, 16, 16, generator=g),
        "timesteps": torch.linspace(900, 100, STEPS).round(),
        "encoder_hidden_states": torch.randn(2, 7, 64 if sdxl else 32, generator=g),
    }
    if sdxl:
        inputs["text_embeds"] = torch.randn(2, 32, generator=g)
        inputs["time_ids"] = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]]).repeat(2, 1)
    return inputs


def flux_graph() -> Graph:
    body = Graph("body")
    body.add("predict", "predict_flow")
    body.add("step", "test_caching_euler")
    body.connect("predict.noise_pred", "step.noise_pred")
    body.expose_input("latents", "predict.hidden_states", "step.latents")
    body.expose_input("t", "predict.t", "step.t")
    for name in ("encoder_hidden_states", "pooled_projections", "txt_ids", "img_ids"):
        body.expose_input(name, f"predict.{name}")
    body.expose_output("latents", "step.latents")
    g = Graph("custom_flux")
    g.add("denoise", Loop(body, over="timesteps", item="t", carry={"latents": "latents"}))
    for name in ("encoder_hidden_states", "pooled_projections", "txt_ids", "img_ids", "latents"):
        g.expose_input(name, f"denoise.{name}")
    g.expose_input("timesteps", "denoise.timesteps")
    g.expose_output("latents", "denoise.latents")
    return g.validate()


def flux_inputs() -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    side = 4
    img_ids = torch.stack(torch.meshgrid(torch.arange(1) * 0, torch.arange(side), torch.arange(side), indexing="ij"),
                          dim=-1).reshape(-1, 3).float()
    return {
        "latents": torch.randn(1, side * side, 4, generator=g),
        "timesteps": torch.linspace(1000, 125, STEPS),
        "encoder_hidden_states": torch.randn(1, 6, 32, generator=g),
        "pooled_projections": torch.randn(1, 32, generator=g),
        "txt_ids": torch.zeros(6, 3),
        "img_ids": img_ids,
    }
