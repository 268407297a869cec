"""Tiny Flux and VAE configs and inputs for parity tests against diffusers."""

from __future__ import annotations

from typing import Any

import torch

FLUX_SCHNELL_LIKE: dict[str, Any] = dict(
    patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
    num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
    axes_dims_rope=(4, 4, 8), guidance_embeds=False,
)
FLUX_DEV_LIKE: dict[str, Any] = {**FLUX_SCHNELL_LIKE, "guidance_embeds": True}
# 2x2 patches, a separate out_channels and two blocks of each kind.
FLUX_PATCHED: dict[str, Any] = {**FLUX_SCHNELL_LIKE, "patch_size": 2, "in_channels": 16,
                                "out_channels": 8, "num_layers": 2, "num_single_layers": 2}

VAE_SD_LIKE: dict[str, Any] = dict(
    block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=32,
    layers_per_block=1, sample_size=32,
)
# Flux-VAE-like: 3 levels, shift_factor, no quant convs, 2 resnets per level.
VAE_FLUX_LIKE: dict[str, Any] = dict(
    block_out_channels=(32, 32, 64), down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=8, norm_num_groups=16,
    layers_per_block=2, sample_size=32, scaling_factor=0.3611, shift_factor=0.1159,
    use_quant_conv=False, use_post_quant_conv=False, force_upcast=False,
)


def flux_inputs(config: dict[str, Any], batch: int = 2, grid: int = 4, text_len: int = 6,
                seed: int = 0) -> dict[str, Any]:
    """Forward kwargs for a Flux model: packed latents on a ``grid x grid`` token grid."""
    g = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    img_ids = torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(-1, 3).float()
    return dict(
        hidden_states=torch.randn(batch, grid * grid, config["in_channels"], generator=g),
        encoder_hidden_states=torch.randn(batch, text_len, config["joint_attention_dim"], generator=g),
        pooled_projections=torch.randn(batch, config["pooled_projection_dim"], generator=g),
        timestep=torch.rand(batch, generator=g),
        img_ids=img_ids,
        txt_ids=torch.zeros(text_len, 3),
        guidance=torch.full((batch,), 3.5) if config["guidance_embeds"] else None,
    )


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


# config.json of public checkpoints, as published (for shape checks on the meta device).
FLUX1_DEV_CONFIG: dict[str, Any] = {
    "_class_name": "FluxTransformer2DModel", "_diffusers_version": "0.30.0.dev0",
    "attention_head_dim": 128, "guidance_embeds": True, "in_channels": 64, "joint_attention_dim": 4096,
    "num_attention_heads": 24, "num_layers": 19, "num_single_layers": 38, "patch_size": 1,
    "pooled_projection_dim": 768,
}
FLUX1_SCHNELL_CONFIG: dict[str, Any] = {**FLUX1_DEV_CONFIG, "guidance_embeds": False,
                                         "axes_dims_rope": [16, 56, 56], "out_channels": None}
_VAE4 = {"down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
         "block_out_channels": [128, 256, 512, 512], "act_fn": "silu", "in_channels": 3, "out_channels": 3,
         "layers_per_block": 2, "norm_num_groups": 32}
SD15_VAE_CONFIG: dict[str, Any] = {"_class_name": "AutoencoderKL", "_diffusers_version": "0.6.0",
                                   "latent_channels": 4, "sample_size": 512, **_VAE4}
SDXL_VAE_CONFIG: dict[str, Any] = {"_class_name": "AutoencoderKL", "_diffusers_version": "0.20.0.dev0",
                                   "latent_channels": 4, "sample_size": 1024, "scaling_factor": 0.13025,
                                   "force_upcast": True, **_VAE4}
FLUX1_VAE_CONFIG: dict[str, Any] = {
    "_class_name": "AutoencoderKL", "_diffusers_version": "0.30.0.dev0", "latent_channels": 16,
    "sample_size": 1024, "scaling_factor": 0.3611, "shift_factor": 0.1159, "force_upcast": True,
    "latents_mean": None, "latents_std": None, "mid_block_add_attention": True,
    "use_quant_conv": False, "use_post_quant_conv": False, **_VAE4,
}


def same_shapes(ours: torch.nn.Module, reference: torch.nn.Module) -> bool:
    """Both state dicts have the same keys with the same shapes."""
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    return shapes(ours) == shapes(reference)
