"""DDIMScheduler: denoising diffusion implicit models (Song et al. 2021)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from diffblocks.noise import randn_tensor
from diffblocks.schedulers.base import Scheduler, SchedulerOutput, SchedulerState
from diffblocks.schedulers.prediction import Scalar, postprocess_x0


def ddim_step(
    x0: torch.Tensor, eps: torch.Tensor, alpha_bar_prev: Scalar, std_dev: Scalar, noise: torch.Tensor | None
) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12): x_{t-1} = sqrt(a_prev) x0 + sqrt(1 - a_prev - s^2) eps + s z."""
    prev = alpha_bar_prev ** (0.5) * x0 + (1 - alpha_bar_prev - std_dev**2) ** (0.5) * eps
    return prev if noise is None else prev + std_dev * noise


def ddim_variance(alpha_bar: Scalar, alpha_bar_prev: Scalar) -> torch.Tensor:
    """sigma_t^2 / eta^2 of DDIM (Song et al. 2021, eq. 16)."""
    return ((1 - alpha_bar_prev) / (1 - alpha_bar)) * (1 - alpha_bar / alpha_bar_prev)


class DDIMScheduler(Scheduler):
    """DDIM: deterministic (eta = 0) or partly stochastic (eta > 0) non-Markovian sampling."""

    defaults = dict(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", trained_betas=None,
        clip_sample=True, set_alpha_to_one=True, steps_offset=0, prediction_type="epsilon", thresholding=False,
        dynamic_thresholding_ratio=0.995, clip_sample_range=1.0, sample_max_value=1.0, timestep_spacing="leading",
        rescale_betas_zero_snr=False,
    )  # fmt: skip

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        # alpha_bar "before" t = 0: 1 (a clean final step) or, as in the original code, alpha_bar_0
        self.final_alpha_cumprod = torch.tensor(1.0) if self.config.set_alpha_to_one else self.alphas_cumprod[0]

    def new_state(
        self, num_inference_steps: int | None = None, device: torch.device | str | None = None,
        timesteps: Any = None, sigmas: Any = None, mu: float | None = None,
    ) -> SchedulerState:  # fmt: skip
        n = self._step_count(num_inference_steps, timesteps=timesteps, sigmas=sigmas, mu=mu)
        ts = self._spaced_timesteps(n).round().astype(np.int64)
        return SchedulerState(timesteps=torch.from_numpy(ts).to(device), num_inference_steps=n)

    def _step(
        self,
        state: SchedulerState,
        model_output: torch.Tensor,
        timestep: Any,
        sample: torch.Tensor,
        generator: Any = None,
        eta: float = 0.0,
        use_clipped_model_output: bool = False,
        variance_noise: torch.Tensor | None = None,
    ) -> SchedulerOutput:
        # The previous timestep is t minus the *leading* stride whatever the spacing: the reference's rule.
        prev_t = timestep - self.num_train_timesteps // state.num_inference_steps
        alpha_bar = self.alphas_cumprod[timestep]
        alpha_bar_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        alpha_t, sigma_t = alpha_bar ** (0.5), (1 - alpha_bar) ** (0.5)
        x0 = self.prediction.to_denoised(model_output, sample, alpha_t, sigma_t)
        eps = self.prediction.to_epsilon(model_output, sample, alpha_t, sigma_t)
        x0 = postprocess_x0(x0, self.config)
        std_dev = eta * ddim_variance(alpha_bar, alpha_bar_prev) ** (0.5)
        if use_clipped_model_output:  # re-derive eps from the clipped x0 (as in Glide)
            eps = (sample - alpha_t * x0) / sigma_t
        noise = None
        if eta > 0:
            if variance_noise is not None and generator is not None:
                raise ValueError("DDIMScheduler.step: pass generator or variance_noise, not both")
            noise = variance_noise
            if noise is None:
                noise = randn_tensor(model_output.shape, generator, model_output.device, model_output.dtype)
        prev_sample = ddim_step(x0, eps, alpha_bar_prev, std_dev, noise)
        return SchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)
