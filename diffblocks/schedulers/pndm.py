"""PNDMScheduler: pseudo numerical methods for diffusion models (Liu et al. 2022).

Runge-Kutta warm-up (PRK, 3 steps made of 4 model calls each) then linear multistep (PLMS);
with `skip_prk_steps` the warm-up is a single second-order step, as Stable Diffusion uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from diffblocks.schedulers.base import Scheduler, SchedulerOutput, SchedulerState
from diffblocks.schedulers.prediction import Scalar


def pndm_transfer(sample: torch.Tensor, eps: torch.Tensor, alpha_bar: Scalar, alpha_bar_prev: Scalar) -> torch.Tensor:
    """The transfer part phi(x_t, eps, t, t-delta) of pseudo numerical methods (Liu et al. 2022, eq. 11)."""
    sample_coeff = (alpha_bar_prev / alpha_bar) ** (0.5)
    denom = alpha_bar * (1 - alpha_bar_prev) ** (0.5) + (alpha_bar * (1 - alpha_bar) * alpha_bar_prev) ** (0.5)
    return sample_coeff * sample - (alpha_bar_prev - alpha_bar) * eps / denom


def plms_eps(ets: list[torch.Tensor]) -> torch.Tensor:
    """Linear multistep (Adams-Bashforth) combination of the last 1-4 eps (Liu et al. 2022, eq. 12)."""
    if len(ets) == 2:
        return (3 * ets[-1] - ets[-2]) / 2
    if len(ets) == 3:
        return (23 * ets[-1] - 16 * ets[-2] + 5 * ets[-3]) / 12
    return (1 / 24) * (55 * ets[-1] - 59 * ets[-2] + 37 * ets[-3] - 9 * ets[-4])


@dataclass(eq=False, kw_only=True)
class PNDMState(SchedulerState):
    prk_timesteps: np.ndarray
    counter: int = 0  # model calls so far
    ets: list[torch.Tensor] = field(default_factory=list)  # past eps, one per full step
    cur_model_output: torch.Tensor | float = 0.0  # PRK: running weighted sum of the 4 slopes
    cur_sample: torch.Tensor | None = None  # sample at the start of the current (multi-call) step


class PNDMScheduler(Scheduler):
    """PNDM / PLMS: fourth-order linear multistep on the DDIM transfer function."""

    pndm_order = 4
    defaults = dict(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", trained_betas=None,
        skip_prk_steps=False, set_alpha_to_one=False, prediction_type="epsilon", timestep_spacing="leading",
        steps_offset=0,
    )  # fmt: skip
    choices = {"prediction_type": ("epsilon", "v_prediction")}

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.final_alpha_cumprod = torch.tensor(1.0) if self.config.set_alpha_to_one else self.alphas_cumprod[0]

    def new_state(
        self, num_inference_steps: int | None = None, device: torch.device | str | None = None,
        timesteps: Any = None, sigmas: Any = None, mu: float | None = None,
    ) -> PNDMState:  # fmt: skip
        n = self._step_count(num_inference_steps, timesteps=timesteps, sigmas=sigmas, mu=mu)
        steps = self._spaced_timesteps(n)[::-1].round().astype(np.int64)  # ascending
        if self.config.skip_prk_steps:
            # the first PLMS step needs two model calls at the same timestep (t and its repeat)
            prk = np.array([], dtype=np.int64)
            plms = np.concatenate([steps[:-1], steps[-2:-1], steps[-1:]])[::-1]
        else:
            if n < self.pndm_order:
                raise ValueError(
                    f"PNDMScheduler: the Runge-Kutta warm-up needs num_inference_steps >= {self.pndm_order} (got {n}); "
                    "use more steps or skip_prk_steps=True (PLMS)"
                )
            # each of the last 3 strides is split in two halves, visited t, t-h, t-h, t-2h (RK4)
            half = self.num_train_timesteps // n // 2
            prk = np.array(steps[-self.pndm_order :]).repeat(2) + np.tile(np.array([0, half]), self.pndm_order)
            prk = prk[:-1].repeat(2)[1:-1][::-1]
            plms = steps[:-3][::-1]
        timesteps = torch.from_numpy(np.concatenate([prk, plms]).astype(np.int64)).to(device)
        return PNDMState(timesteps=timesteps, num_inference_steps=n, prk_timesteps=prk.copy())

    def _transfer(self, sample: torch.Tensor, timestep: Any, prev_t: Any, model_output: torch.Tensor) -> torch.Tensor:
        alpha_bar = self.alphas_cumprod[timestep]
        alpha_bar_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        eps = self.prediction.to_epsilon(model_output, sample, alpha_bar**0.5, (1 - alpha_bar) ** 0.5)
        return pndm_transfer(sample, eps, alpha_bar, alpha_bar_prev)

    def _step(
        self, state: PNDMState, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, generator: Any = None,
    ) -> SchedulerOutput:
        if state.counter < len(state.prk_timesteps) and not self.config.skip_prk_steps:
            prev_sample = self._step_prk(state, model_output, timestep, sample)
        else:
            prev_sample = self._step_plms(state, model_output, timestep, sample)
        state.counter += 1
        return SchedulerOutput(prev_sample=prev_sample)

    def _step_prk(self, state: PNDMState, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor) -> torch.Tensor:
        """One of the 4 calls of a Runge-Kutta step; slopes weighted 1/6, 1/3, 1/3, 1/6."""
        stride = self.num_train_timesteps // state.num_inference_steps
        phase = state.counter % 4
        prev_t = timestep - (0 if state.counter % 2 else stride // 2)
        t_start = int(state.prk_timesteps[state.counter // 4 * 4])
        if phase == 0:
            state.cur_model_output = state.cur_model_output + 1 / 6 * model_output
            state.ets.append(model_output)
            state.cur_sample = sample
        elif phase in (1, 2):
            state.cur_model_output = state.cur_model_output + 1 / 3 * model_output
        else:
            model_output = state.cur_model_output + 1 / 6 * model_output
            state.cur_model_output = 0.0
        start = state.cur_sample if state.cur_sample is not None else sample
        return self._transfer(start, t_start, prev_t, model_output)

    def _step_plms(self, state: PNDMState, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor) -> torch.Tensor:
        """Linear multistep on the stored eps; the very first step (skip_prk) is a 2-call Heun-like step."""
        if not self.config.skip_prk_steps and len(state.ets) < 3:
            raise ValueError("PNDMScheduler: PLMS steps need the 12 PRK warm-up calls first (or skip_prk_steps=True)")
        stride = self.num_train_timesteps // state.num_inference_steps
        prev_t = timestep - stride
        if state.counter != 1:
            state.ets = state.ets[-3:] + [model_output]
        else:  # second call of the first step: same timestep, evaluated from the start again
            prev_t, timestep = timestep, timestep + stride
        if len(state.ets) == 1 and state.counter == 0:
            state.cur_sample = sample
        elif len(state.ets) == 1 and state.counter == 1:
            model_output = (model_output + state.ets[-1]) / 2
            sample, state.cur_sample = state.cur_sample, None
        else:
            model_output = plms_eps(state.ets)
        return self._transfer(sample, timestep, prev_t, model_output)
