"""SD inpainting's starting latents: 4-channel UNets blend the known region back after each step,
9-channel inpainting UNets take the mask and the masked image's latents as input channels; the
UNet's ``in_channels`` decides. Random draws follow diffusers' order (see ``stages.latents``)."""

from __future__ import annotations

from typing import Any

import torch

from ...blocks.function import block
from ...blocks.ports import Outputs
from ...blocks.types import ImageLatents, Latents, Mask, Noise, PromptEmbeds, Timesteps
from ...noise import randn_tensor
from ...schedulers.base import SchedulerState
from ..stages.images import vae_scale_factor
from ..stages.latents import check_generators, noise_shape, repeat_to
from ..stages.vae import LatentMoments, sample_image_latents
from . import hints as _hints

__all__ = ["prepare_inpaint_latents"]


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
    generator: Any = None,
    latents: Latents | None = None,
) -> dict:
    """Inpainting: starting latents, the noise (for re-noising the known region), the latent-size
    mask and, per UNet kind, the image latents (4-channel UNets blend them back after each step)
    or the masked image's latents (9-channel UNets take them as extra input channels)."""
    batch = prompt_embeds.shape[0]
    check_generators(generator, batch)
    blend = unet.config.in_channels == 4
    full = strength == 1.0
    device, dtype = prompt_embeds.device, prompt_embeds.dtype
    image_latents = None
    if blend or (latents is None and not full):
        image_latents = repeat_to(sample_image_latents(vae, image_moments, generator, dtype), batch, "image")
    if latents is None:
        noise = randn_tensor(noise_shape(vae, batch, height, width), generator, device, dtype)
        start = timesteps[:1].repeat(batch)
        latents = noise * scheduler_state.init_noise_sigma if full else scheduler.add_noise(
            image_latents, noise, start, state=scheduler_state)
    else:
        noise = latents.to(device)
        latents = noise * scheduler_state.init_noise_sigma
    # The masked image's sample is always drawn from the generator, as diffusers does.
    masked = sample_image_latents(vae, masked_image_moments, generator, dtype)
    factor = vae_scale_factor(vae)
    mask = torch.nn.functional.interpolate(mask_condition, size=(height // factor, width // factor))
    return {
        "latents": latents, "noise": noise, "image_latents": image_latents if blend else None,
        "mask": repeat_to(mask.to(device, dtype), batch, "mask"),
        "masked_image_latents": None if blend else repeat_to(masked, batch, "masked image"),
    }
