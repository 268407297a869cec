"""DDPMScheduler: ancestral sampling of the DDPM reverse process (Ho et al. 2020)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from diffblocks.noise import randn_tensor
from diffblocks.schedulers.base import Scheduler, SchedulerOutput, SchedulerState
from diffblocks.schedulers.prediction import Scalar, postprocess_x0
from diffblocks.schedulers.schedules import check_num_steps


def ddpm_posterior_mean(x0: torch.Tensor, sample: torch.Tensor, alpha_bar: Scalar, alpha_bar_prev: Scalar) -> torch.Tensor:
    """Mean of q(x_{t-1} | x_t, x0) (Ho et al. 2020, eq. 7)."""
    alpha_t = alpha_bar / alpha_bar_prev
    beta_t = 1 - alpha_t
    x0_coeff = (alpha_bar_prev ** (0.5) * beta_t) / (1 - alpha_bar)
    sample_coeff = alpha_t ** (0.5) * (1 - alpha_bar_prev) / (1 - alpha_bar)
    return x0_coeff * x0 + sample_coeff * sample


def ddpm_posterior_variance(alpha_bar: Scalar, alpha_bar_prev: Scalar) -> torch.Tensor:
    """beta~_t = (1 - a_{t-1}) / (1 - a_t) * beta_t, the "fixed_small" variance (Ho et al. 2020, eq. 7)."""
    beta_t = 1 - alpha_bar / alpha_bar_prev
    return torch.clamp((1 - alpha_bar_prev) / (1 - alpha_bar) * beta_t, min=1e-20)


class DDPMScheduler(Scheduler):
    """Denoising diffusion probabilistic models: x_{t-1} ~ q(x_{t-1} | x_t, x0 = model's x0)."""

    defaults = dict(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", trained_betas=None,
        variance_type="fixed_small", clip_sample=True, prediction_type="epsilon", thresholding=False,
        dynamic_thresholding_ratio=0.995, clip_sample_range=1.0, sample_max_value=1.0, timestep_spacing="leading",
        steps_offset=0, rescale_betas_zero_snr=False,
    )  # fmt: skip
    choices = {
        "beta_schedule": ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"),
        # "fixed_large_log" is left out: diffusers takes the square root of a log there (NaN).
        "variance_type": ("fixed_small", "fixed_small_log", "fixed_large", "learned", "learned_range"),
    }

    def new_state(
        self, num_inference_steps: int | None = None, device: torch.device | str | None = None,
        timesteps: list[int] | None = None, sigmas: Any = None, mu: float | None = None,
    ) -> SchedulerState:  # fmt: skip
        """Spaced timesteps per `timestep_spacing`, or custom descending `timesteps`."""
        self._reject_custom(sigmas=sigmas, mu=mu)
        name, num_train = type(self).__name__, self.num_train_timesteps
        if timesteps is not None:
            if num_inference_steps is not None:
                raise ValueError(f"{name}: pass num_inference_steps or timesteps, not both")
            if any(b >= a for a, b in zip(timesteps, timesteps[1:])):
                raise ValueError(f"{name}: custom timesteps must be strictly descending, got {list(timesteps)}")
            if timesteps[0] >= num_train:
                raise ValueError(f"{name}: custom timesteps must be below num_train_timesteps={num_train}")
            ts = np.array(timesteps, dtype=np.int64)
        else:
            n = check_num_steps(num_inference_steps, num_train, name)
            ts = self._spaced_timesteps(n).round().astype(np.int64)
        return SchedulerState(timesteps=torch.from_numpy(ts).to(device), num_inference_steps=len(ts))

    def _previous_timestep(self, state: SchedulerState, timestep: int | torch.Tensor) -> torch.Tensor:
        index = int((state.timesteps == timestep).nonzero(as_tuple=True)[0][0])
        return torch.tensor(-1) if index == len(state.timesteps) - 1 else state.timesteps[index + 1]

    def _variance(
        self, alpha_bar: torch.Tensor, alpha_bar_prev: torch.Tensor, predicted: torch.Tensor | None,
    ) -> torch.Tensor:
        """Standard deviation (or log variance for learned_range) of the noise this step adds."""
        variance = ddpm_posterior_variance(alpha_bar, alpha_bar_prev)
        beta_t = 1 - alpha_bar / alpha_bar_prev
        kind = self.config.variance_type
        if kind == "fixed_small":
            return variance**0.5
        if kind == "fixed_small_log":
            return torch.exp(0.5 * torch.log(variance))
        if kind == "fixed_large":
            return beta_t**0.5
        if kind == "learned":
            return predicted**0.5
        # learned_range: the model interpolates log-variance between beta~_t and beta_t (Nichol & Dhariwal 2021, eq. 15)
        frac = (predicted + 1) / 2
        return torch.exp(0.5 * (frac * torch.log(beta_t) + (1 - frac) * torch.log(variance)))

    def _step(
        self,
        state: SchedulerState,
        model_output: torch.Tensor,
        timestep: Any,
        sample: torch.Tensor,
        generator: Any = None,
    ) -> SchedulerOutput:
        predicted_variance = None
        if self.config.variance_type in ("learned", "learned_range") and model_output.shape[1] == sample.shape[1] * 2:
            model_output, predicted_variance = torch.split(model_output, sample.shape[1], dim=1)
        prev_t = self._previous_timestep(state, timestep)
        alpha_bar = self.alphas_cumprod[timestep]
        alpha_bar_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else torch.tensor(1.0)
        x0 = self.prediction.to_denoised(model_output, sample, alpha_bar**0.5, (1 - alpha_bar) ** 0.5)
        x0 = postprocess_x0(x0, self.config)
        prev_sample = ddpm_posterior_mean(x0, sample, alpha_bar, alpha_bar_prev)
        if timestep > 0:
            noise = randn_tensor(model_output.shape, generator, model_output.device, model_output.dtype)
            prev_sample = prev_sample + self._variance(alpha_bar, alpha_bar_prev, predicted_variance) * noise
        return SchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)
