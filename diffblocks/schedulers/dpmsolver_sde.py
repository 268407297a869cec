"""DPMSolverSDEScheduler ("DPM++ SDE"): the second-order stochastic DPM-Solver++ of k-diffusion's
`sample_dpmpp_sde` (Lu et al. 2022, arXiv:2211.01095, with eta = 1 and midpoint r = 1/2).

Each step from sigma to sigma_next takes two model calls: one at sigma, one at the midpoint of
the step in t = -log(sigma). Both sub-steps are ancestral DPM-Solver++(1) steps whose noise is
read from one Brownian motion over [sigma_min, sigma_max] (torchsde's Brownian interval), so
the noise of a step does not depend on how finely the run is cut. The last step (to sigma 0) is
a plain Euler step. The run's timesteps are t_0, mid_0, t_1, mid_1, ..., t_{n-1}.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import warnings

import numpy as np
import torch
import torchsde

from diffblocks.schedulers.base import SchedulerOutput, SchedulerState
from diffblocks.schedulers.k_samplers import KDiffusionScheduler, to_d
from diffblocks.schedulers.schedules import sigma_to_t, sigmas_from_alphas_cumprod

MIDPOINT = 0.5  # r of DPM-Solver++(2S): where in [t, t_next] the second model call is made


def t_of(sigma: torch.Tensor) -> torch.Tensor:
    """The solver's time variable t = -log(sigma)."""
    return sigma.log().neg()


def sigma_of(t: torch.Tensor) -> torch.Tensor:
    """sigma = exp(-t)."""
    return t.neg().exp()


def dpmpp_ancestral_step(
    x: torch.Tensor, denoised: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """DPM-Solver++(1) from t to t_next as an ancestral step (k-diffusion sample_dpmpp_sde, eta = 1):
    a deterministic step to sigma_down, then `noise` (unit variance) scaled by sigma_up."""
    sigma_from, sigma_to = sigma_of(t), sigma_of(t_next)
    sigma_up = min(sigma_to, (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    t_down = t_of(sigma_down)
    x = (sigma_of(t_down) / sigma_of(t)) * x - (t - t_down).expm1() * denoised
    return x + noise * sigma_up


class BrownianNoise:
    """Unit-variance increments of one Brownian motion W over sigma in [sigma_min, sigma_max]:
    `noise(s, s_next) = (W(s_next) - W(s)) / sqrt(|s_next - s|)`. One torchsde Brownian interval per
    seed (a list of seeds gives one per batch element), queried as diffusers' BrownianTreeNoiseSampler
    queries it, so the same seed gives the same noise."""

    def __init__(self, like: torch.Tensor, sigma_min: float, sigma_max: float, seed: int | Sequence[int]) -> None:
        self.batched = not isinstance(seed, int)
        seeds = list(seed) if self.batched else [seed]
        size = like.shape[1:] if self.batched else like.shape
        low, high = torch.as_tensor(sigma_min), torch.as_tensor(sigma_max)
        self.trees = [
            torchsde.BrownianInterval(
                t0=low, t1=high, size=size, dtype=like.dtype, device=like.device,
                entropy=s, tol=1e-6, pool_size=24, halfway_tree=True,
            )  # fmt: skip
            for s in seeds
        ]

    def __call__(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        low, high, sign = (sigma, sigma_next, 1.0) if sigma < sigma_next else (sigma_next, sigma, -1.0)
        with warnings.catch_warnings():  # the schedule's ends, rounded to fp32, fall a hair outside the interval
            warnings.filterwarnings("ignore", "Should have", UserWarning)
            w = torch.stack([tree(low, high) for tree in self.trees]) * sign
        return (w if self.batched else w[0]) / (sigma_next - sigma).abs().sqrt()


@dataclass(eq=False, kw_only=True)
class DPMSDEState(SchedulerState):
    sample: torch.Tensor | None = None  # where the current step started; None = next call is a first one
    mid_point_sigma: torch.Tensor | None = None  # sigma of the second call
    noise: BrownianNoise | None = None  # made on the first step, from the sample's shape


class DPMSolverSDEScheduler(KDiffusionScheduler):
    """DPM++ SDE (order 2: two model calls per step). `noise_sampler_seed` fixes the Brownian motion;
    without it a seed is drawn from `generator` (or from torch's global generator, as diffusers does)."""

    order = 2
    state_class = DPMSDEState
    defaults = dict(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear", trained_betas=None,
        prediction_type="epsilon", use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False,
        noise_sampler_seed=None, timestep_spacing="linspace", steps_offset=0,
    )  # fmt: skip
    choices = {"prediction_type": ("epsilon", "v_prediction")}
    timestep_dtype = np.float64  # the reference keeps this sampler's (fractional) timesteps in float64

    def new_state(
        self, num_inference_steps: int | None = None, device: torch.device | str | None = None,
        timesteps: Any = None, sigmas: Any = None, mu: float | None = None,
    ) -> DPMSDEState:  # fmt: skip
        """Spaced timesteps (float64, as the reference keeps them) with the step midpoints in between."""
        n = self._step_count(num_inference_steps, timesteps=timesteps, sigmas=sigmas, mu=mu)
        ts, sig = self._step_sigmas(n)
        # midpoint of each step in t = -log(sigma), as a training timestep
        t = -np.log(sig)
        mid_ts = sigma_to_t(np.exp(-(t[:-1] + np.diff(t) * MIDPOINT)), np.log(sigmas_from_alphas_cumprod(self.alphas_cumprod)))
        sig_t = torch.from_numpy(np.concatenate([sig, [0.0]]).astype(np.float32))
        sig_t = torch.cat([sig_t[:1], sig_t[1:-1].repeat_interleave(2), sig_t[-1:]])
        ts_t = torch.from_numpy(np.asarray(ts, dtype=self.timestep_dtype))
        ts_t = torch.cat([ts_t[:1], ts_t[1:].repeat_interleave(2)])
        ts_t[1::2] = torch.from_numpy(mid_ts)
        state = self._make_state(ts_t, sig_t, device)
        state.num_inference_steps = n
        return state

    def scale_model_input(
        self, sample: torch.Tensor, timestep: float | torch.Tensor | None = None, state: SchedulerState | None = None,
    ) -> torch.Tensor:
        """x / sqrt(1 + sigma^2) at this call's sigma (the step's midpoint on second calls)."""
        state = self._current(state, "scale_model_input")
        sigma = state.sigmas[self._init_step_index(state, timestep)]
        sigma_input = sigma if state.sample is None else state.mid_point_sigma
        return sample / ((sigma_input**2 + 1) ** 0.5)

    def _step(
        self, state: DPMSDEState, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor,
        generator: Any = None, s_noise: float = 1.0,
    ) -> SchedulerOutput:  # fmt: skip
        i = self._init_step_index(state, timestep)
        if state.noise is None:
            seed = self.config.noise_sampler_seed
            if seed is None:
                gen = generator[0] if isinstance(generator, list) else generator
                seed = int(torch.randint(0, 2**63 - 1, [], generator=gen).item())
            positive = state.sigmas[state.sigmas > 0]
            state.noise = BrownianNoise(sample, positive.min().item(), state.sigmas.max().item(), seed)
        first = state.sample is None
        sigma, sigma_next = (state.sigmas[i], state.sigmas[i + 1]) if first else (state.sigmas[i - 1], state.sigmas[i])
        t, t_next = t_of(sigma), t_of(sigma_next)
        t_mid = t + (t_next - t) * MIDPOINT
        # the model saw x at sigma on the first call and at the midpoint on the second
        x0 = self.prediction.to_denoised_ve(model_output, sample, sigma if first else sigma_of(t_mid))
        if sigma_next == 0:
            prev_sample = sample + to_d(sample, x0, sigma) * (sigma_next - sigma)  # Euler
        elif first:  # to the midpoint with the denoised estimate at sigma
            prev_sample = dpmpp_ancestral_step(sample, x0, t, t_mid, state.noise(sigma_of(t), sigma_of(t_mid)) * s_noise)
            state.sample, state.mid_point_sigma = sample, sigma_of(t_mid)
        else:  # the whole step from where it started, with the denoised estimate at the midpoint
            start = state.sample
            prev_sample = dpmpp_ancestral_step(start, x0, t, t_next, state.noise(sigma_of(t), sigma_of(t_next)) * s_noise)
            state.sample = state.mid_point_sigma = None
        state.step_index = i + 1
        return SchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)
