"""Family-agnostic blocks of a denoise loop body (a family adds its denoiser call and builds the
body; SD's is ``presets/sd/denoise.py``)::

    scale_input -> inpaint_channels -> prepare_guidance -> <denoiser> -> guidance -> step -> blend_inpaint

``inpaint_channels`` and ``blend_inpaint`` pass latents through unless the inpainting inputs are
given (9-channel UNets take the mask and masked-image latents as input channels; 4-channel UNets
get the known region blended back after each step). The sampler's per-run state is the run's
state from ``set_timesteps``, on the ``scheduler_state`` edge.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch

from ...schedulers.base import SchedulerState
from . import hints as _hints
from ...blocks.context import RunContext
from ...blocks.function import block
from ...blocks.types import ImageLatents, Latents, Mask, Noise, NoisePred, Timestep

__all__ = ["scale_model_input", "concat_inpaint_channels", "step_scheduler", "blend_inpaint_latents"]


@block("scale_model_input", version=1, components={"scheduler": _hints.SCHEDULER}, output_name="latent_model_input")
def scale_model_input(scheduler: Any, latents: Latents, t: Timestep, scheduler_state: SchedulerState) -> Latents:
    """The denoiser's input at timestep ``t`` (k-diffusion samplers divide by sqrt(sigma^2 + 1))."""
    return scheduler.scale_model_input(latents, t, state=scheduler_state)


@block("concat_inpaint_channels", version=1)
def concat_inpaint_channels(
    latent_model_input: Latents, mask: Mask | None = None, masked_image_latents: ImageLatents | None = None
) -> Latents:
    """Inpainting UNets (9 channels): append the mask and the masked image's latents as channels."""
    if masked_image_latents is None:
        return latent_model_input
    return torch.cat([latent_model_input, mask, masked_image_latents], dim=1)


@functools.lru_cache(maxsize=64)
def _takes_eta(step_fn: Any) -> bool:
    return "eta" in inspect.signature(step_fn).parameters


@block("step_scheduler", version=1, memoise=False, components={"scheduler": _hints.SCHEDULER})
def step_scheduler(
    scheduler: Any,
    noise_pred: NoisePred,
    t: Timestep,
    latents: Latents,
    scheduler_state: SchedulerState,
    generator: Any = None,
    eta: float = 0.0,
) -> Latents:
    """Advance the latents one sampler step (ancestral/SDE samplers draw from ``generator``);
    ``scheduler_state`` (this run's, made by ``set_timesteps``) advances with them.

    Args:
        eta: DDIM's noise weight (ignored by samplers without it).
    """
    options = {"eta": eta} if _takes_eta(type(scheduler)._step) else {}
    return scheduler.step(noise_pred, t, latents, generator=generator, return_dict=False, state=scheduler_state, **options)[0]


@block("blend_inpaint_latents", version=1, components={"scheduler": _hints.SCHEDULER})
def blend_inpaint_latents(
    scheduler: Any,
    latents: Latents,
    scheduler_state: SchedulerState,
    ctx: RunContext,
    mask: Mask | None = None,
    image_latents: ImageLatents | None = None,
    noise: Noise | None = None,
) -> Latents:
    """4-channel inpainting: keep the known region from the image, noised to the next timestep."""
    if image_latents is None:
        return latents
    state = scheduler_state
    known = image_latents
    if ctx.step is not None and ctx.step < ctx.total - 1:
        next_t = state.timesteps[(state.begin_index or 0) + ctx.step + 1]
        known = scheduler.add_noise(image_latents, noise, next_t.reshape(1), state=state)
    return (1 - mask) * known + mask * latents
