"""Starting latents for text2img, img2img and inpainting.

These blocks draw random numbers from the ``generator`` input, in diffusers' order, so they are
not memoised: img2img draws the VAE posterior sample and then the noise; inpainting draws the
image's posterior sample (4-channel UNets, or strength < 1), the noise, then the masked image's
posterior sample. The posteriors come from ``encode_image`` (memoised), so a new seed does not
re-run the VAE encoder. The batch size is the number of prompt embeddings (prompts x images each).
"""

from __future__ import annotations

from typing import Any

import torch

from ..limits import check_image_request
from ..noise import randn_tensor
from ..schedulers.base import SchedulerState
from . import _hints
from .context import RunContext
from .function import block
from .images import vae_scale_factor
from .ports import Outputs
from .timesteps import run_state
from .types import ImageLatents, Latents, Mask, Noise, PromptEmbeds, Timesteps
from .vae import LatentMoments, sample_image_latents

__all__ = ["prepare_latents", "prepare_image_latents", "prepare_inpaint_latents", "skip_inpaint_latents"]


def _check_generators(generator: Any, batch: int) -> None:
    if isinstance(generator, list) and len(generator) != batch:
        raise ValueError(f"generator is a list of {len(generator)} but the batch has {batch} images (prompts x num_images_per_prompt)")


def _repeat_to(x: torch.Tensor, batch: int, name: str) -> torch.Tensor:
    if x.shape[0] == batch:
        return x
    if batch % x.shape[0]:
        raise ValueError(f"cannot spread {x.shape[0]} {name}(s) over a batch of {batch}; give 1 or {batch}")
    return x.repeat(batch // x.shape[0], *(1,) * (x.ndim - 1))


def _noise_shape(vae: Any, batch: int, height: int, width: int) -> tuple[int, ...]:
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
    _check_generators(generator, batch)
    if latents is None:
        latents = randn_tensor(_noise_shape(vae, batch, height, width), generator, prompt_embeds.device, prompt_embeds.dtype)
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
    ctx: RunContext,
    generator: Any = None,
    latents: Latents | None = None,
) -> Latents:
    """img2img: the image's latents (a posterior sample), noised to the first timestep."""
    if latents is not None:
        return latents
    batch = prompt_embeds.shape[0]
    _check_generators(generator, batch)
    if isinstance(generator, list):  # one posterior sample per batch element, each from its generator
        image_moments = _repeat_to(image_moments, batch, "image")
    image_latents = _repeat_to(sample_image_latents(vae, image_moments, generator, prompt_embeds.dtype), batch, "image")
    noise = randn_tensor(tuple(image_latents.shape), generator, image_latents.device, image_latents.dtype)
    start = timesteps[:1].repeat(batch)
    return scheduler.add_noise(image_latents, noise, start, state=run_state(ctx, scheduler_state))


INPAINT_OUTPUTS = Outputs(
    latents=Latents, noise=Noise, image_latents=ImageLatents | None, mask=Mask,
    masked_image_latents=ImageLatents | None,
)


@block(
    "prepare_inpaint_latents", version=1, memoise=False, outputs=INPAINT_OUTPUTS,
    components={"vae": _hints.VAE, "scheduler": _hints.SCHEDULER, "unet": _hints.UNET},
)
def prepare_inpaint_latents(
    vae: Any,
    scheduler: Any,
    unet: Any,
    image_moments: LatentMoments,
    masked_image_moments: LatentMoments,
    mask_condition: Mask,
    prompt_embeds: PromptEmbeds,
    height: int,
    width: int,
    strength: float,
    timesteps: Timesteps,
    scheduler_state: SchedulerState,
    ctx: RunContext,
    generator: Any = None,
    latents: Latents | None = None,
) -> dict:
    """Inpainting: starting latents, the noise (for re-noising the known region), the latent-size
    mask and, per UNet kind, the image latents (4-channel UNets blend them back after each step)
    or the masked image's latents (9-channel UNets take them as extra input channels)."""
    batch = prompt_embeds.shape[0]
    _check_generators(generator, batch)
    blend = unet.config.in_channels == 4
    full = strength == 1.0
    device, dtype = prompt_embeds.device, prompt_embeds.dtype
    image_latents = None
    if blend or (latents is None and not full):
        image_latents = _repeat_to(sample_image_latents(vae, image_moments, generator, dtype), batch, "image")
    if latents is None:
        noise = randn_tensor(_noise_shape(vae, batch, height, width), generator, device, dtype)
        start = timesteps[:1].repeat(batch)
        latents = noise * scheduler_state.init_noise_sigma if full else scheduler.add_noise(
            image_latents, noise, start, state=run_state(ctx, scheduler_state))
    else:
        noise = latents.to(device)
        latents = noise * scheduler_state.init_noise_sigma
    # The masked image's sample is always drawn from the generator, as diffusers does.
    masked = sample_image_latents(vae, masked_image_moments, generator, dtype)
    factor = vae_scale_factor(vae)
    mask = torch.nn.functional.interpolate(mask_condition, size=(height // factor, width // factor))
    return {
        "latents": latents, "noise": noise, "image_latents": image_latents if blend else None,
        "mask": _repeat_to(mask.to(device, dtype), batch, "mask"),
        "masked_image_latents": None if blend else _repeat_to(masked, batch, "masked image"),
    }


@block(
    "skip_inpaint_latents", version=1,
    outputs=Outputs(noise=Noise | None, image_latents=ImageLatents | None, mask=Mask | None, masked_image_latents=ImageLatents | None),
)
def skip_inpaint_latents() -> dict:
    """No inpainting: the loop's inpainting inputs are all None (their blocks pass through)."""
    return {"noise": None, "image_latents": None, "mask": None, "masked_image_latents": None}
