"""EulerAncestralDiscreteScheduler: Euler steps with fresh noise each step ("Euler a")."""

from __future__ import annotations

from typing import Any

import torch

from diffblocks.noise import randn_tensor
from diffblocks.schedulers.base import SchedulerOutput, SchedulerState
from diffblocks.schedulers.k_samplers import KDiffusionScheduler, to_d
from diffblocks.schedulers.prediction import Scalar


def ancestral_sigmas(sigma_from: Scalar, sigma_to: Scalar) -> tuple[Scalar, Scalar]:
    """(sigma_down, sigma_up) so a deterministic step to sigma_down plus fresh noise sigma_up lands at sigma_to."""
    sigma_up = (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5
    return (sigma_to**2 - sigma_up**2) ** 0.5, sigma_up


def euler_ancestral_step(
    x: torch.Tensor, denoised: torch.Tensor, sigma: Scalar, sigma_next: Scalar, noise: torch.Tensor
) -> torch.Tensor:
    """Euler ancestral (k-diffusion sample_euler_ancestral): Euler to sigma_down, then add noise * sigma_up."""
    sigma_down, sigma_up = ancestral_sigmas(sigma, sigma_next)
    return x + to_d(x, denoised, sigma) * (sigma_down - sigma) + noise * sigma_up


class EulerAncestralDiscreteScheduler(KDiffusionScheduler):
    """Ancestral sampling with Euler steps (k-diffusion sample_euler_ancestral, Karras et al. 2022 notation)."""

    defaults = dict(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", trained_betas=None,
        prediction_type="epsilon", timestep_spacing="linspace", steps_offset=0, rescale_betas_zero_snr=False,
    )  # fmt: skip

    def _step(
        self,
        state: SchedulerState,
        model_output: torch.Tensor,
        timestep: Any,
        sample: torch.Tensor,
        generator: Any = None,
    ) -> SchedulerOutput:
        i = self._init_step_index(state, timestep)
        sigma, sigma_next = state.sigmas[i], state.sigmas[i + 1]
        sample = sample.to(torch.float32)
        x0 = self.prediction.to_denoised_ve(model_output, sample, sigma)
        # drawn on every step, the last included, so seeded runs stay in step with the reference
        noise = randn_tensor(model_output.shape, generator, model_output.device, model_output.dtype)
        prev_sample = euler_ancestral_step(sample, x0, sigma, sigma_next, noise)
        state.step_index = i + 1
        return SchedulerOutput(prev_sample=prev_sample.to(model_output.dtype), pred_original_sample=x0)
