"""EulerDiscreteScheduler: Euler's method on the probability-flow ODE (Karras et al. 2022, Algorithm 2)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from diffblocks.noise import randn_tensor
from diffblocks.schedulers.base import SchedulerOutput, SchedulerState
from diffblocks.schedulers.k_samplers import KDiffusionScheduler, to_d
from diffblocks.schedulers.prediction import Scalar
from diffblocks.schedulers.schedules import check_num_steps, final_sigma, sigma_schedule_name, sigma_to_t, sigmas_from_alphas_cumprod


def euler_step(x: torch.Tensor, denoised: torch.Tensor, sigma: Scalar, sigma_next: Scalar) -> torch.Tensor:
    """Euler's method on the PF-ODE (Karras et al. 2022, Algorithm 2 without the correction)."""
    return x + to_d(x, denoised, sigma) * (sigma_next - sigma)


class EulerDiscreteScheduler(KDiffusionScheduler):
    """Euler sampler; with `s_churn > 0` it becomes Karras' stochastic sampler (noise added before the step)."""

    defaults = dict(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", trained_betas=None,
        prediction_type="epsilon", interpolation_type="linear", use_karras_sigmas=False,
        use_exponential_sigmas=False, use_beta_sigmas=False, sigma_min=None, sigma_max=None,
        timestep_spacing="linspace", timestep_type="discrete", steps_offset=0, rescale_betas_zero_snr=False,
        final_sigmas_type="zero",
    )  # fmt: skip
    choices = {"interpolation_type": ("linear", "log_linear"), "timestep_type": ("discrete", "continuous")}

    def _schedule_bounds(self, sigmas: np.ndarray) -> tuple[float, float]:
        low, high = super()._schedule_bounds(sigmas)
        cfg = self.config
        return (cfg.sigma_min if cfg.sigma_min is not None else low, cfg.sigma_max if cfg.sigma_max is not None else high)

    def _final_sigma(self) -> float | torch.Tensor:
        return final_sigma(self.config.final_sigmas_type, self.alphas_cumprod)

    def _spaced_sigmas(self, num_steps: int, train_sigmas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        timesteps, sigmas = super()._spaced_sigmas(num_steps, train_sigmas)
        if self.config.interpolation_type == "log_linear":
            # evenly spaced in log sigma over the whole training range, num_steps + 1 values (reference quirk)
            sigmas = torch.linspace(np.log(train_sigmas[-1]), np.log(train_sigmas[0]), num_steps + 1).exp().numpy()
        return timesteps, sigmas

    @property
    def _continuous(self) -> bool:
        # v-prediction EDM-style models (e.g. CosXL) take c_noise = log(sigma) / 4 as their timestep
        return self.config.timestep_type == "continuous" and self.config.prediction_type == "v_prediction"

    def new_state(
        self,
        num_inference_steps: int | None = None,
        device: torch.device | str | None = None,
        timesteps: list[float] | None = None,
        sigmas: list[float] | None = None,
        mu: float | None = None,
    ) -> SchedulerState:
        """Spaced schedule, or custom `timesteps` (interpolated sigmas) or custom `sigmas` (final one included)."""
        self._reject_custom(mu=mu)
        name = type(self).__name__
        options = {"num_inference_steps": num_inference_steps, "timesteps": timesteps, "sigmas": sigmas}
        given = [k for k, v in options.items() if v is not None]
        if len(given) != 1:
            raise ValueError(f"{name}.set_timesteps: pass exactly one of num_inference_steps, timesteps, sigmas (got {given or 'none'})")
        if timesteps is not None and (sigma_schedule_name(self.config) or self._continuous):
            raise ValueError(f"{name}: custom timesteps cannot be combined with use_*_sigmas or continuous timesteps")
        train_sigmas = sigmas_from_alphas_cumprod(self.alphas_cumprod)
        if sigmas is not None:
            sig = np.array(sigmas).astype(np.float32)
            ts = sigma_to_t(sig[:-1], np.log(train_sigmas))
        elif timesteps is not None:
            ts = np.array(timesteps).astype(np.float32)
            sig = np.concatenate([np.interp(ts, np.arange(len(train_sigmas)), train_sigmas), [self._final_sigma()]]).astype(np.float32)
        else:
            ts, sig = self._sigma_schedule(check_num_steps(num_inference_steps, self.num_train_timesteps, name))
        if self._continuous:
            ts = 0.25 * torch.from_numpy(sig[:-1]).log()
        return self._make_state(ts, sig, device)

    def _step(
        self,
        state: SchedulerState,
        model_output: torch.Tensor,
        timestep: Any,
        sample: torch.Tensor,
        generator: Any = None,
        s_churn: float = 0.0,
        s_tmin: float = 0.0,
        s_tmax: float = float("inf"),
        s_noise: float = 1.0,
    ) -> SchedulerOutput:
        i = self._init_step_index(state, timestep)
        sample = sample.to(torch.float32)
        sigma = state.sigmas[i]
        gamma = min(s_churn / (len(state.sigmas) - 1), 2**0.5 - 1) if s_tmin <= sigma <= s_tmax else 0.0
        sigma_hat = sigma * (gamma + 1)
        if gamma > 0:  # "churn": raise the noise level to sigma_hat with fresh noise (Karras et al. 2022, Alg. 2)
            eps = randn_tensor(model_output.shape, generator, model_output.device, model_output.dtype) * s_noise
            sample = sample + eps * (sigma_hat**2 - sigma**2) ** 0.5
        if self.prediction.name == "v_prediction":  # the model saw the input scaled for sigma, not sigma_hat
            x0 = self.prediction.to_denoised_ve(model_output, sample, sigma)
        else:
            x0 = self.prediction.to_denoised_ve(model_output, sample, sigma_hat)
        prev_sample = euler_step(sample, x0, sigma_hat, state.sigmas[i + 1])
        state.step_index = i + 1
        return SchedulerOutput(prev_sample=prev_sample.to(model_output.dtype), pred_original_sample=x0)
