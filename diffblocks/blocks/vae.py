"""VAE stage: encode images to model latents (a helper the latent blocks share) and decode
latents to images (``decode_latents``, or ``decode_latents_tiled`` for large images)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch

from . import _hints
from .function import block
from .types import Images, Latents

__all__ = ["encode_vae_image", "decode_latents", "decode_latents_tiled", "to_vae_latents"]


@contextmanager
def _upcast(vae: Any) -> Iterator[torch.dtype]:
    """Run the VAE in float32 when it is half precision and its config says fp16 overflows."""
    dtype = next(vae.parameters()).dtype
    if dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
        vae.to(torch.float32)
        try:
            yield torch.float32
        finally:
            vae.to(dtype)
    else:
        yield dtype


def _stats(vae: Any, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
    if mean is None or std is None:
        return None
    shape = (1, len(mean), 1, 1)
    return torch.tensor(mean).view(shape).to(like), torch.tensor(std).view(shape).to(like)


def encode_vae_image(vae: Any, image: torch.Tensor, generator: Any) -> torch.Tensor:
    """Images in [-1, 1] -> model latents: a posterior *sample* drawn from ``generator`` (one
    generator per image when a list is given), then scaled (and normalised when the config has
    latents_mean/std)."""
    dtype = image.dtype
    with _upcast(vae) as run_dtype:
        x = image.to(run_dtype)
        if isinstance(generator, list):
            z = torch.cat([vae.encode(x[i : i + 1]).latent_dist.sample(generator[i]) for i in range(x.shape[0])])
        else:
            z = vae.encode(x).latent_dist.sample(generator)
    z = z.to(dtype)
    stats = _stats(vae, z)
    if stats is not None:
        return (z - stats[0]) * vae.config.scaling_factor / stats[1]
    return z * vae.config.scaling_factor


def to_vae_latents(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """Model latents -> the VAE decoder's latent space (undo scaling / normalisation)."""
    stats = _stats(vae, latents)
    if stats is not None:
        return latents * stats[1] / vae.config.scaling_factor + stats[0]
    return latents / vae.config.scaling_factor


def _decode(vae: Any, latents: torch.Tensor, output_type: str, tiled: bool) -> torch.Tensor:
    if output_type == "latent":
        return latents
    with _upcast(vae) as dtype:
        z = to_vae_latents(vae, latents).to(dtype)
        image = vae.tiled_decode(z).sample if tiled else vae.decode(z).sample
    return image


@block("decode_latents", version=1, components={"vae": _hints.VAE}, output_name="images")
def decode_latents(vae: Any, latents: Latents, output_type: str = "pil") -> Images:
    """Decode model latents to images in [-1, 1] (B, 3, H, W); ``output_type="latent"`` passes the
    latents through. Half-precision VAEs with ``force_upcast`` decode in float32."""
    return _decode(vae, latents, output_type, tiled=False)


@block("decode_latents_tiled", version=1, components={"vae": _hints.VAE}, output_name="images")
def decode_latents_tiled(vae: Any, latents: Latents, output_type: str = "pil") -> Images:
    """Like ``decode_latents`` but in overlapping tiles with blended seams (bounded memory)."""
    return _decode(vae, latents, output_type, tiled=True)
