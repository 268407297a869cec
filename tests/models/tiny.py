"""Tiny configs and helpers shared by the model tests (diffusers' own test sizes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

SD15: dict[str, Any] = {
    "block_out_channels": [32, 64],
    "layers_per_block": 2,
    "sample_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}

# SD 2.x: linear projections, per-block head counts (64-wide heads in SD 2: 5/10/20/20 heads).
SD2: dict[str, Any] = {
    **SD15,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64, 64],
    "attention_head_dim": [2, 4, 4],
    "use_linear_projection": True,
    "upcast_attention": True,
    "cross_attention_dim": 48,
}

# SDXL: text_time additional embedding, per-block transformer depths, no attention in block 0.
SDXL: dict[str, Any] = {
    **SD15,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [32, 64, 64],
    "attention_head_dim": [2, 4, 8],
    "transformer_layers_per_block": [1, 2, 3],
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 32 + 6 * 8,  # pooled text (32) + 6 time ids x 8
    "cross_attention_dim": 64,
}

# SD inpainting: latents (4) + mask (1) + masked-image latents (4).
INPAINT: dict[str, Any] = {**SD15, "in_channels": 9}

# ADM-style resnets: the time embedding scales and shifts the normalised features.
SCALE_SHIFT: dict[str, Any] = {**SD15, "resnet_time_scale_shift": "scale_shift"}

CONFIGS = {"sd15": SD15, "sd2": SD2, "sdxl": SDXL, "inpaint": INPAINT, "scale_shift": SCALE_SHIFT}


def unet_inputs(config: dict[str, Any], batch: int = 2, size: int = 16, seed: int = 0) -> dict[str, Any]:
    """Random forward kwargs for a UNet config (SDXL extras included when the config needs them)."""
    g = torch.Generator().manual_seed(seed)
    cross = config["cross_attention_dim"]
    cross = cross[0] if isinstance(cross, list) else cross
    kwargs: dict[str, Any] = {
        "sample": torch.randn(batch, config.get("in_channels", 4), size, size, generator=g),
        "timestep": torch.tensor([10, 700])[:batch] if batch <= 2 else 500,
        "encoder_hidden_states": torch.randn(batch, 7, cross, generator=g),
    }
    if config.get("addition_embed_type") == "text_time":
        pooled = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(batch, pooled, generator=g),
            "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]]).repeat(batch, 1),
        }
    return kwargs


def save_diffusers_unet(config: dict[str, Any], folder: Path, seed: int = 0, **save_kwargs: Any) -> Any:
    """Build diffusers' UNet with random weights (non-trivial norms too), save it, return it."""
    from diffusers import UNet2DConditionModel as DiffusersUNet

    torch.manual_seed(seed)
    model = DiffusersUNet(**config).eval()
    randomize_(model, seed)
    model.save_pretrained(folder, **save_kwargs)
    return model


def randomize_(model: torch.nn.Module, seed: int = 0) -> None:
    """Perturb every parameter so zero-initialised layers (e.g. norms' biases) matter in parity checks."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
