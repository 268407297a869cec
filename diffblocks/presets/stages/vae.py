"""VAE stage: encode images and decode latents.

Encoding is split in two so that a new seed does not re-run the encoder: ``encode_image`` (memoised)
gives the posterior's moments, and the latent blocks draw the posterior sample from the run's
generator with ``sample_image_latents`` (diffusers samples the posterior, so the draw must stay
in the run). Decoding: ``decode_latents``, or ``decode_latents_tiled`` for large images.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch

from ...noise import randn_tensor
from . import hints as _hints
from ...blocks.function import block
from ...blocks.ports import Outputs
from ...blocks.types import Images, Latents, Mask, SemanticTensor

__all__ = [
    "LatentMoments", "encode_image", "sample_image_latents", "decode_latents", "decode_latents_tiled", "to_vae_latents",
]


class LatentMoments(SemanticTensor):
    """A VAE posterior: mean and log-variance stacked on the channels, (B, 2C, h, w)."""


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


def _moments(vae: Any, image: torch.Tensor) -> torch.Tensor:
    with _upcast(vae) as dtype:
        return vae.encode(image.to(dtype)).latent_dist.parameters


@block(
    "encode_image", version=1, components={"vae": _hints.VAE},
    outputs=Outputs(image_moments=LatentMoments | None, masked_image_moments=LatentMoments | None),
)
def encode_image(vae: Any, init_image: Images | None = None, mask_condition: Mask | None = None) -> dict:
    """Encode the input image, and with a mask also the image with the region to repaint blanked
    out, to VAE posterior moments. No image: both None."""
    if init_image is None:
        return {"image_moments": None, "masked_image_moments": None}
    masked = None
    if mask_condition is not None:
        masked = _moments(vae, init_image * (mask_condition < 0.5).to(init_image))
    return {"image_moments": _moments(vae, init_image), "masked_image_moments": masked}


def sample_image_latents(vae: Any, moments: torch.Tensor, generator: Any, dtype: torch.dtype) -> torch.Tensor:
    """Model latents from posterior moments: a sample ``mean + std * noise`` (noise from
    ``generator``, or ``generator[i]`` for image i when a list is given), then scaled (and
    normalised when the VAE config has latents_mean/std)."""
    mean, logvar = moments.chunk(2, dim=1)
    std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))  # the LDM clamp keeps std finite
    if isinstance(generator, list):
        one = (1, *mean.shape[1:])
        noise = torch.cat([randn_tensor(one, generator[i], moments.device, moments.dtype) for i in range(mean.shape[0])])
    else:
        noise = randn_tensor(tuple(mean.shape), generator, moments.device, moments.dtype)
    z = (mean + std * noise).to(dtype)
    stats = _stats(vae, z)
    if stats is not None:
        return (z - stats[0]) * vae.config.scaling_factor / stats[1]
    return (z - _shift(vae)) * vae.config.scaling_factor


def to_vae_latents(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """Model latents -> the VAE decoder's latent space (undo scaling / normalisation)."""
    stats = _stats(vae, latents)
    if stats is not None:
        return latents * stats[1] / vae.config.scaling_factor + stats[0]
    return latents / vae.config.scaling_factor + _shift(vae)


def _shift(vae: Any) -> float:
    # SD3 / Flux VAEs centre their latents with shift_factor; SD 1.x / SDXL have none (None).
    return getattr(vae.config, "shift_factor", None) or 0.0


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
