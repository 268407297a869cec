"""Flux timesteps: sigmas 1 -> 1/n, shifted towards noise by ``mu`` (resolution-dependent
dynamic shifting) or by the scheduler's fixed ``shift``.

Flux.1-dev's scheduler config has ``use_dynamic_shifting``: larger images (more latent tokens)
spend more of the schedule at high noise, with ``mu`` linear in the token count between
``base_image_seq_len`` -> ``base_shift`` and ``max_image_seq_len`` -> ``max_shift``. Schnell's
config has a fixed ``shift`` (1.0) instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...blocks.function import block
from ...blocks.ports import Outputs
from ...blocks.types import Timesteps
from ...schedulers.base import SchedulerState
from ...schedulers.schedules import calculate_shift
from . import hints
from .latents import latent_grid

__all__ = ["image_seq_len", "shift_mu", "set_timesteps_flux"]


def image_seq_len(vae: Any, height: int, width: int) -> int:
    """Packed latent tokens for an image of ``height`` x ``width`` pixels."""
    h, w = latent_grid(vae, height, width)
    return (h // 2) * (w // 2)


def shift_mu(config: Any, seq_len: int) -> float:
    """``mu`` for ``seq_len`` image tokens from a scheduler config (diffusers' defaults when a key is absent)."""
    return calculate_shift(
        seq_len, config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
        config.get("base_shift", 0.5), config.get("max_shift", 1.15),
    )


@block("set_timesteps_flux", version=1, memoise=False, components={"scheduler": hints.SCHEDULER, "vae": hints.VAE})
def set_timesteps_flux(
    scheduler: Any,
    vae: Any,
    height: int,
    width: int,
    num_inference_steps: int = 28,
    sigmas: list[float] | None = None,
    strength: float = 1.0,
) -> Outputs(timesteps=Timesteps, scheduler_state=SchedulerState):
    """The flow-matching schedule for an image of ``height`` x ``width``: ``sigmas`` (default:
    evenly spaced from 1 to 1/``num_inference_steps``), shifted by the scheduler (dynamic shift
    ``mu`` from the image's token count, or its fixed shift). With ``strength`` < 1 (img2img)
    only the last part of the schedule runs.

    Args:
        sigmas: custom noise levels, one per step (then ``num_inference_steps`` is their count).
        strength: fraction of the schedule to run (1: all of it, from pure noise).
    """
    steps = len(sigmas) if sigmas is not None else num_inference_steps
    levels = np.linspace(1.0, 1 / steps, steps) if sigmas is None else sigmas
    options = {}
    if scheduler.config.get("use_dynamic_shifting", False):
        options["mu"] = shift_mu(scheduler.config, image_seq_len(vae, height, width))
    state = scheduler.new_state(sigmas=levels, **options)
    # diffusers' Flux img2img keeps the fraction before flooring (SD floors the kept count instead).
    start = int(max(steps - min(steps * strength, steps), 0)) * scheduler.order
    timesteps = state.timesteps[start:]
    if len(timesteps) == 0:
        raise ValueError(
            f"strength={strength} with num_inference_steps={steps} leaves no step to run; "
            "raise strength or num_inference_steps"
        )
    state.begin_index = start
    return {"timesteps": timesteps, "scheduler_state": state}
