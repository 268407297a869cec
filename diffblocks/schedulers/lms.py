"""LMSDiscreteScheduler: linear multistep on the probability-flow ODE (k-diffusion sample_lms)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from . import samplers
from .base import SchedulerOutput, SchedulerState
from .k_samplers import KDiffusionScheduler


@dataclass(eq=False, kw_only=True)
class LMSState(SchedulerState):
    derivatives: list[torch.Tensor] = field(default_factory=list)  # last `order` ODE slopes, oldest first


class LMSDiscreteScheduler(KDiffusionScheduler):
    """Adams-Bashforth-style multistep in sigma with coefficients from Lagrange interpolation (order up to 4)."""

    state_class = LMSState
    defaults = dict(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", trained_betas=None,
        use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False, prediction_type="epsilon",
        timestep_spacing="linspace", steps_offset=0,
    )  # fmt: skip

    def _step(
        self,
        state: LMSState,
        model_output: torch.Tensor,
        timestep: Any,
        sample: torch.Tensor,
        generator: Any = None,
        order: int = 4,
    ) -> SchedulerOutput:
        i = self._init_step_index(state, timestep)
        sigma = state.sigmas[i]
        x0 = self.prediction.to_denoised_ve(model_output, sample, sigma)
        state.derivatives = (state.derivatives + [samplers.to_d(sample, x0, sigma)])[-order:]
        order = min(i + 1, order)
        coeffs = samplers.lms_coefficients(state.sigmas.numpy(), i, order)
        prev_sample = sample + sum(c * d for c, d in zip(coeffs, reversed(state.derivatives)))
        state.step_index = i + 1
        return SchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)
