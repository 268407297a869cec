"""Starting latents for text2img, img2img and inpainting.

These blocks draw random numbers from the ``generator`` input, in diffusers' order, so they are
not memoised: img2img draws the VAE posterior sample and then the noise; inpainting draws the
image's posterior sample, the noise, then the masked image's posterior sample (SD's
``prepare_inpaint_latents``). The posteriors come from ``encode_image`` (memoised), so a new seed does not
re-run the VAE encoder. The batch size is the number of prompt embeddings (prompts x images each).
"""

from __future__ import annotations

from typing import Any

import torch

from ...limits import check_image_request
from ...noise import randn_tensor
from ...schedulers.base import SchedulerState
from . import hints as _hints
from ...blocks.function import block
from .images import vae_scale_factor
from ...blocks.ports import Outputs
from ...blocks.types import ImageLatents, Latents, Mask, Noise, PromptEmbeds, Timesteps
from .vae import LatentMoments, sample_image_latents

__all__ = [
    "prepare_latents", "prepare_image_latents", "skip_inpaint_latents", "check_generators", "repeat_to", "noise_shape",
]


def check_generators(generator: Any, batch: int) -> None:
    """A list of generators needs one per image of the batch."""
    if isinstance(generator, list) and len(generator) != batch:
        raise ValueError(f"generator is a list of {len(generator)} but the batch has {batch} images (prompts x num_images_per_prompt)")


def repeat_to(x: torch.Tensor, batch: int, name: str) -> torch.Tensor:
    """``x`` (1 or ``batch`` rows) as ``batch`` rows."""
    if x.shape[0] == batch:
        return x
    if batch % x.shape[0]:
        raise ValueError(f"cannot spread {x.shape[0]} {name}(s) over a batch of {batch}; give 1 or {batch}")
    return x.repeat(batch // x.shape[0], *(1,) * (x.ndim - 1))


def noise_shape(vae: Any, batch: int, height: int, width: int) -> tuple[int, ...]:
    """(B, C, H, W) of image latents for ``height`` x ``width`` pixels."""
    check_image_request(height, width, batch=batch)  # before the noise is allocated
    factor = vae_scale_factor(vae)
    return (batch, vae.config.latent_channels, height // factor, width // factor)


@block("prepare_latents", version=1, memoise=False, components={"vae": _hints.VAE}, output_name="latents")
def prepare_latents(
    vae: Any,
    prompt_embeds: PromptEmbeds,
    height: int,
    width: int,
    scheduler_state: SchedulerState,
    generator: Any = None,
    latents: Latents | None = None,
) -> Latents:
    """text2img: Gaussian noise from ``generator`` (or the given ``latents``) scaled by the
    sampler's initial noise sigma."""
    batch = prompt_embeds.shape[0]
    check_generators(generator, batch)
    if latents is None:
        latents = randn_tensor(noise_shape(vae, batch, height, width), generator, prompt_embeds.device, prompt_embeds.dtype)
    return latents.to(prompt_embeds.device) * scheduler_state.init_noise_sigma


@block(
    "prepare_image_latents", version=1, memoise=False, output_name="latents",
    components={"vae": _hints.VAE, "scheduler": _hints.SCHEDULER},
)
def prepare_image_latents(
    vae: Any,
    scheduler: Any,
    image_moments: LatentMoments,
    prompt_embeds: PromptEmbeds,
    timesteps: Timesteps,
    scheduler_state: SchedulerState,
    generator: Any = None,
    latents: Latents | None = None,
) -> Latents:
    """img2img: the image's latents (a posterior sample), noised to the first timestep."""
    if latents is not None:
        return latents
    batch = prompt_embeds.shape[0]
    check_generators(generator, batch)
    if isinstance(generator, list):  # one posterior sample per batch element, each from its generator
        image_moments = repeat_to(image_moments, batch, "image")
    image_latents = repeat_to(sample_image_latents(vae, image_moments, generator, prompt_embeds.dtype), batch, "image")
    noise = randn_tensor(tuple(image_latents.shape), generator, image_latents.device, image_latents.dtype)
    start = timesteps[:1].repeat(batch)
    return scheduler.add_noise(image_latents, noise, start, state=scheduler_state)


@block(
    "skip_inpaint_latents", version=1,
    outputs=Outputs(noise=Noise | None, image_latents=ImageLatents | None, mask=Mask | None, masked_image_latents=ImageLatents | None),
)
def skip_inpaint_latents() -> dict:
    """No inpainting: the loop's inpainting inputs are all None (their blocks pass through)."""
    return {"noise": None, "image_latents": None, "mask": None, "masked_image_latents": None}
