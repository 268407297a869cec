"""Tiny random models and a custom Python denoise graph (a Loop over a two-node body, built by
bench/gpu.py) for the step-cache tests: the caches are swapped in with one ``replace``, as a user
would."""

from __future__ import annotations

from typing import Any

import torch

from bench.gpu import loop_graph
from diffblocks.graph import Graph
from diffblocks.models.flux import FluxTransformer2DModel
from diffblocks.models.unet_2d_condition import UNet2DConditionModel
from diffblocks.presets import families

from tests.models.tiny import SD15, SDXL, randomize_

families()  # registers predict_noise / predict_flow and the cache blocks

STEPS = 8


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
    """``latents`` -> Loop(predict_noise -> Euler step) over ``timesteps`` (bench/gpu.py's loop)."""
    return loop_graph("unet", ("encoder_hidden_states", "text_embeds", "time_ids") if sdxl else ("encoder_hidden_states",))


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
    return loop_graph("transformer", ("encoder_hidden_states", "pooled_projections", "txt_ids", "img_ids"))


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
