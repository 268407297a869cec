"""Shared adapter for the k-diffusion samplers (Euler, Euler ancestral, Heun, LMS).

They view a VP model as a denoiser of x = x0 + sigma * noise (Karras et al. 2022): the latents
start at `init_noise_sigma`, the model sees x / sqrt(1 + sigma^2), and each run walks a sigma
schedule built here from the config: spacing -> interpolated sigmas -> optional karras /
exponential / beta schedule -> final sigma.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from diffblocks.schedulers.base import Scheduler, SchedulerState, broadcast_like
from diffblocks.schedulers.schedules import (
    SIGMA_SCHEDULES,
    interp_sigmas,
    sigma_schedule_name,
    sigma_to_t,
    sigmas_from_alphas_cumprod,
)


def to_d(x: torch.Tensor, denoised: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """dx/dsigma of the probability-flow ODE (Karras et al. 2022, eq. 4 with sigma(t) = t)."""
    return (x - denoised) / sigma


class KDiffusionScheduler(Scheduler):
    """Base for samplers that step in sigma. Subclasses add `_step` and, if they keep history, a state class."""

    state_class: type[SchedulerState] = SchedulerState
    # the reference keeps these samplers' timesteps in fp32 (DPM++ SDE keeps float64)
    timestep_dtype: type[np.floating[Any]] = np.float32

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        if self.config.get("rescale_betas_zero_snr"):
            # zero terminal SNR would make the last training sigma infinite; keep it huge but finite
            self.alphas_cumprod[-1] = 2**-24

    def _check_config(self, values: Any) -> None:
        sigma_schedule_name(values)

    def _schedule_bounds(self, sigmas: np.ndarray) -> tuple[float, float]:
        """(sigma_min, sigma_max) for karras/exponential/beta schedules: the ends of the spaced schedule."""
        return sigmas[-1].item(), sigmas[0].item()

    def _final_sigma(self) -> float | torch.Tensor:
        return 0.0

    def _spaced_sigmas(self, num_steps: int, train_sigmas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Timesteps per `timestep_spacing` and their interpolated training sigmas (both descending)."""
        timesteps = self._spaced_timesteps(num_steps)
        timesteps = timesteps.astype(self.timestep_dtype)
        return timesteps, interp_sigmas(timesteps, train_sigmas)

    def _step_sigmas(self, num_steps: int) -> tuple[np.ndarray, np.ndarray]:
        """(timesteps, sigmas) of the run's steps, before the final sigma is appended (float64 sigmas)."""
        train_sigmas = sigmas_from_alphas_cumprod(self.alphas_cumprod)
        timesteps, sigmas = self._spaced_sigmas(num_steps, train_sigmas)
        name = sigma_schedule_name(self.config)
        if name is not None:
            sigmas = SIGMA_SCHEDULES[name](*self._schedule_bounds(sigmas), num_steps)
            timesteps = sigma_to_t(sigmas, np.log(train_sigmas))
        return timesteps, sigmas

    def _sigma_schedule(self, num_steps: int) -> tuple[np.ndarray, np.ndarray]:
        """(timesteps, fp32 sigmas with the final sigma appended)."""
        timesteps, sigmas = self._step_sigmas(num_steps)
        return timesteps, np.concatenate([sigmas, [self._final_sigma()]]).astype(np.float32)

    def _make_state(
        self, timesteps: np.ndarray | torch.Tensor, sigmas: np.ndarray | torch.Tensor, device: Any, **extra: Any,
    ) -> SchedulerState:
        sigmas = torch.as_tensor(sigmas, dtype=torch.float32)  # kept on the CPU: indexed every step
        timesteps = torch.as_tensor(timesteps).to(device=device, dtype=torch.from_numpy(np.zeros(0, self.timestep_dtype)).dtype)
        max_sigma = sigmas.max()
        # "leading" spacing never reaches the last training step, so the start noise is x_T / sqrt(alpha_bar)
        init = max_sigma if self.config.timestep_spacing in ("linspace", "trailing") else (max_sigma**2 + 1) ** 0.5
        return self.state_class(timesteps=timesteps, sigmas=sigmas, num_inference_steps=len(timesteps), init_noise_sigma=init, **extra)

    def new_state(
        self, num_inference_steps: int | None = None, device: torch.device | str | None = None,
        timesteps: Any = None, sigmas: Any = None, mu: float | None = None,
    ) -> SchedulerState:  # fmt: skip
        n = self._step_count(num_inference_steps, timesteps=timesteps, sigmas=sigmas, mu=mu)
        return self._make_state(*self._sigma_schedule(n), device)

    def scale_model_input(
        self, sample: torch.Tensor, timestep: float | torch.Tensor | None = None, state: SchedulerState | None = None,
    ) -> torch.Tensor:
        """x / sqrt(1 + sigma^2): the VP model's input for the VE sample x."""
        state = self._current(state, "scale_model_input")
        sigma = state.sigmas[self._init_step_index(state, timestep)]
        return sample / ((sigma**2 + 1) ** 0.5)

    def add_noise(
        self,
        original_samples: torch.Tensor,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
        state: SchedulerState | None = None,
    ) -> torch.Tensor:
        """x0 + sigma * noise at this run's `timesteps` (img2img start)."""
        state = self._current(state, "add_noise")
        sigmas = state.sigmas.to(device=original_samples.device, dtype=original_samples.dtype)
        sigma = sigmas[self._sigma_indices(state, timesteps.to(original_samples.device))]
        return original_samples + noise * broadcast_like(sigma, original_samples)
