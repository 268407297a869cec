"""HeunDiscreteScheduler: Heun's second-order method (Karras et al. 2022, Algorithm 1).

Each step takes two model calls: an Euler prediction to sigma_next, then a correction with the
slope there. The run's timesteps list every sigma but the first twice, one entry per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from diffblocks.schedulers.base import SchedulerOutput, SchedulerState
from diffblocks.schedulers.k_samplers import KDiffusionScheduler, to_d
from diffblocks.schedulers.prediction import Scalar
from diffblocks.schedulers.schedules import check_num_steps, sigmas_from_alphas_cumprod


def heun_correct(
    x_start: torch.Tensor, x: torch.Tensor, d_first: torch.Tensor, denoised: torch.Tensor, sigma_next: Scalar, dt: Scalar
) -> torch.Tensor:
    """Heun's second-order correction (Karras et al. 2022, Algorithm 1, line 8): redo the step from
    `x_start` with the average of the first slope and the slope at the Euler prediction `x`."""
    return x_start + (d_first + to_d(x, denoised, sigma_next)) / 2 * dt


@dataclass(eq=False, kw_only=True)
class HeunState(SchedulerState):
    prev_derivative: torch.Tensor | None = None  # slope of the Euler half; None = next call is a first-order one
    dt: torch.Tensor | None = None
    sample: torch.Tensor | None = None  # where the current step started


class HeunDiscreteScheduler(KDiffusionScheduler):
    """Heun sampler (order 2: two model calls per step)."""

    order = 2
    state_class = HeunState
    defaults = dict(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear", trained_betas=None,
        prediction_type="epsilon", use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False,
        clip_sample=False, clip_sample_range=1.0, timestep_spacing="linspace", steps_offset=0,
    )  # fmt: skip
    choices = {"beta_schedule": ("linear", "scaled_linear", "squaredcos_cap_v2", "exp")}

    def new_state(
        self, num_inference_steps: int | None = None, device: torch.device | str | None = None,
        timesteps: list[float] | None = None, sigmas: Any = None, mu: float | None = None,
    ) -> HeunState:  # fmt: skip
        """Spaced (or custom) timesteps; every sigma after the first is visited twice."""
        self._reject_custom(sigmas=sigmas, mu=mu)
        name = type(self).__name__
        if (num_inference_steps is None) == (timesteps is None):
            raise ValueError(f"{name}.set_timesteps: pass exactly one of num_inference_steps, timesteps")
        if timesteps is not None:
            if any(self.config.get(k) for k in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")):
                raise ValueError(f"{name}: custom timesteps cannot be combined with use_*_sigmas")
            ts = np.array(timesteps, dtype=np.float32)
            train = sigmas_from_alphas_cumprod(self.alphas_cumprod)
            sig = np.concatenate([np.interp(ts, np.arange(len(train)), train), [0.0]]).astype(np.float32)
        else:
            ts, sig = self._sigma_schedule(check_num_steps(num_inference_steps, self.num_train_timesteps, name))
        sig, ts = torch.from_numpy(sig), torch.from_numpy(np.asarray(ts))
        sig = torch.cat([sig[:1], sig[1:-1].repeat_interleave(2), sig[-1:]])
        ts = torch.cat([ts[:1], ts[1:].repeat_interleave(2)])
        state = self._make_state(ts, sig, device)
        state.num_inference_steps = len(ts) // 2 + 1
        return state

    def _step(
        self, state: HeunState, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, generator: Any = None,
    ) -> SchedulerOutput:
        i = self._init_step_index(state, timestep)
        first_order = state.dt is None
        sigma, sigma_next = (state.sigmas[i], state.sigmas[i + 1]) if first_order else (state.sigmas[i - 1], state.sigmas[i])
        # the model was called at sigma on the first call and at sigma_next on the correction call
        x0 = self.prediction.to_denoised_ve(model_output, sample, sigma if first_order else sigma_next)
        if self.config.clip_sample:
            x0 = x0.clamp(-self.config.clip_sample_range, self.config.clip_sample_range)
        if first_order:
            state.prev_derivative = to_d(sample, x0, sigma)
            state.dt, state.sample = sigma_next - sigma, sample
            prev_sample = sample + state.prev_derivative * state.dt
        else:
            prev_sample = heun_correct(state.sample, sample, state.prev_derivative, x0, sigma_next, state.dt)
            state.prev_derivative = state.dt = state.sample = None
        state.step_index = i + 1
        return SchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)
