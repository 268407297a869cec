"""Flux latents: 2x2 patches packed into tokens, and the tokens' RoPE positions.

The transformer sees latents as a sequence: each 2x2 patch of a (C, h, w) latent image becomes
one token of 4C channels, row by row, (B, C, h, w) -> (B, h/2 * w/2, 4C). Token (i, j) sits at
RoPE position (0, i, j); text tokens sit at (0, 0, 0).
"""

from __future__ import annotations

from typing import Any

import torch

from ...blocks.function import block
from ..stages.images import vae_scale_factor
from ...blocks.types import LatentIds, Latents, PromptEmbeds
from . import hints

__all__ = ["pack", "unpack", "latent_grid", "pack_latents", "unpack_latents", "prepare_latent_image_ids"]


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h/2 * w/2, 4C), channels of a token ordered (c, dy, dx)."""
    b, c, h, w = latents.shape
    patches = latents.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)  # (B, h/2, w/2, C, 2, 2)
    return patches.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The inverse of `pack` for a latent image of ``h`` x ``w``: (B, h/2 * w/2, 4C) -> (B, C, h, w)."""
    b, _, channels = tokens.shape
    patches = tokens.reshape(b, h // 2, w // 2, channels // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)  # (B, C, h/2, 2, w/2, 2)
    return patches.reshape(b, channels // 4, h, w)


def latent_grid(vae: Any, height: int, width: int) -> tuple[int, int]:
    """The latent image's (h, w) for an image of ``height`` x ``width`` pixels (both even)."""
    factor = vae_scale_factor(vae)
    return height // factor, width // factor


@block("pack_latents", version=1)
def pack_latents(latents: Latents) -> Latents:
    """Latent images (B, C, h, w) as transformer tokens (B, h/2 * w/2, 4C); latents that are
    already packed (B, N, 4C), e.g. given by the user, pass through."""
    return latents if latents.ndim == 3 else pack(latents)


@block("unpack_latents", version=1, components={"vae": hints.VAE})
def unpack_latents(vae: Any, latents: Latents, height: int, width: int, output_type: str = "pil") -> Latents:
    """Transformer tokens back to latent images (B, C, h, w) for the VAE; with
    ``output_type="latent"`` the packed tokens pass through (what diffusers returns)."""
    if output_type == "latent":
        return latents
    return unpack(latents, *latent_grid(vae, height, width))


@block("prepare_latent_image_ids", version=1, components={"vae": hints.VAE}, output_name="latent_image_ids")
def prepare_latent_image_ids(vae: Any, prompt_embeds: PromptEmbeds, height: int, width: int) -> LatentIds:
    """RoPE positions (0, row, column) of the packed latent tokens, (h/2 * w/2, 3), in the
    prompt embeddings' dtype and device."""
    h, w = latent_grid(vae, height, width)
    rows = torch.arange(h // 2).repeat_interleave(w // 2)
    cols = torch.arange(w // 2).repeat(h // 2)
    ids = torch.stack([torch.zeros_like(rows), rows, cols], dim=1)
    return ids.to(device=prompt_embeds.device, dtype=prompt_embeds.dtype)
