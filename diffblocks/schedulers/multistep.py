"""Shared pieces of the multistep solvers on the variance-preserving path (DPM-Solver++, UniPC).

Both samplers walk a list of k-diffusion sigmas ``σ = σ_t / α_t`` and do their algebra in the
half log-SNR ``λ = log α_t − log σ_t`` (Lu et al. 2022, arXiv:2206.00927, §3).

(α, σ, λ) of every sigma are computed once per run with fp32 tensor kernels (`vp_points`); the
per-step scalar algebra is in `fp32`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from diffblocks.schedulers.base import Scheduler, SchedulerConfigError, SchedulerState, broadcast_like
from diffblocks.schedulers.fp32 import F32, operand
from diffblocks.schedulers.prediction import dynamic_threshold
from diffblocks.schedulers.schedules import (
    SIGMA_SCHEDULES,
    TIME_SHIFTS,
    check_num_steps,
    final_sigma,
    interp_sigmas,
    sigma_schedule_name,
    sigma_to_t,
    sigmas_from_alphas_cumprod,
    shift_sigmas,
    spaced_timesteps,
    stretch_to_terminal,
)


def check_not_finished(state: SchedulerState, owner: str) -> int:
    """The step index, or a clear error once the run has used all its sigmas."""
    if state.step_index >= len(state.sigmas) - 1:
        raise ValueError(
            f"{owner}.step: all {len(state.sigmas) - 1} steps of this run are done; "
            "call set_timesteps(...) (or new_state(...)) to start another run"
        )
    return state.step_index


class VPPoint(NamedTuple):
    """A noise level on the VP path: x_t = α_t·x0 + σ_t·ε, with half log-SNR λ_t = log α_t − log σ_t (fp32)."""

    alpha: F32
    sigma: F32
    lam: F32


def vp_points(sigmas: Tensor, flow: bool = False) -> list[VPPoint]:
    """(α_t, σ_t, λ_t) of each k-diffusion sigma ``σ = σ_t/α_t`` (λ = +∞ at σ = 0); with ``flow``
    the sigmas are rectified-flow ones, x_t = (1 − σ)·x0 + σ·ε, so α_t = 1 − σ and σ_t = σ.

    Computed with fp32 tensor kernels like the reference: converting ε to x0 divides by α_t
    (~0.006 at the noisy end), which magnifies any difference in the last bit of α_t and σ_t.
    """
    s = sigmas.to(torch.float32)
    if flow:
        alpha, sigma = 1 - s, s
    else:
        alpha = 1 / ((s**2 + 1) ** 0.5)
        sigma = s * alpha
    lam = torch.log(alpha) - torch.log(sigma)
    return [VPPoint(F32(a), F32(b), F32(c)) for a, b, c in zip(alpha.tolist(), sigma.tolist(), lam.tolist())]


def multistep_index(schedule: torch.Tensor, timestep: float | torch.Tensor) -> int:
    """Where ``timestep`` sits in the run; the second hit when repeated, the last step when absent
    (the multistep solvers' rule in the reference, so an off-schedule timestep finishes the run)."""
    if isinstance(timestep, torch.Tensor):
        timestep = timestep.to(schedule.device)
    hits = (schedule == timestep).nonzero()
    if len(hits) == 0:
        return len(schedule) - 1
    return int(hits[1 if len(hits) > 1 else 0].item())


def vp_multistep_schedule(
    config: Mapping[str, Any],
    alphas_cumprod: torch.Tensor,
    num_inference_steps: int | None,
    timesteps: Sequence[int] | None = None,
    kind: str | None = None,
    sigma_range: tuple[float | None, float | None] = (None, None),
    last_timestep: int | None = None,
    karras_round: bool = True,
    final_from_schedule: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(int64 timesteps, float32 sigmas with the final sigma appended) for DPM-Solver / UniPC.

    Timesteps come from ``timestep_spacing`` (or are given); a sigma schedule ``kind`` ("karras",
    "exponential", "beta" or "lu") then replaces the sigmas and maps them back to (fractional)
    training timesteps; ``sigma_range`` overrides its (min, max) ends where the config pins them.
    Two reference quirks are parameters: ``karras_round=False`` keeps Karras timesteps
    fractional (DPM-Solver with the cosine schedule, truncated to int later), and
    ``final_from_schedule`` makes "sigma_min" mean the schedule's own last sigma (UniPC with
    Karras/exponential sigmas) instead of the smallest training sigma.
    """
    train_sigmas = sigmas_from_alphas_cumprod(alphas_cumprod)
    log_sigmas = np.log(train_sigmas)
    if timesteps is not None:
        ts = np.array(timesteps).astype(np.int64)
        num_inference_steps = len(ts)
    else:
        ts = spaced_timesteps(
            config["timestep_spacing"], config["num_train_timesteps"], num_inference_steps,
            config["steps_offset"], end=last_timestep, drop_last=True,
        )
        ts = ts.round().astype(np.int64)

    if kind is None:
        sigmas = interp_sigmas(ts, train_sigmas)
    else:
        if timesteps is not None:
            raise ValueError(f"custom timesteps cannot be combined with use_{kind}_sigmas / use_lu_lambdas")
        # in the reference the schedule's ends are python floats of the fp32 table
        lo, hi = train_sigmas[0].item(), train_sigmas[-1].item()
        lo = lo if sigma_range[0] is None else sigma_range[0]
        hi = hi if sigma_range[1] is None else sigma_range[1]
        if kind == "lu":
            # uniform in λ = −log σ (Lu et al. 2022); written as the reference's rho=1 ramp
            ramp = np.linspace(0, 1, num_inference_steps)
            sigmas = np.exp(log_sigmas[-1].item() + ramp * (log_sigmas[0].item() - log_sigmas[-1].item()))
        else:
            sigmas = SIGMA_SCHEDULES[kind](lo, hi, num_inference_steps)
        ts = sigma_to_t(sigmas, log_sigmas)
        if kind in ("karras", "lu") and karras_round:
            ts = ts.round()
    if final_from_schedule and kind is not None and config["final_sigmas_type"] == "sigma_min":
        last = sigmas[-1]
    else:
        last = final_sigma(config["final_sigmas_type"], alphas_cumprod)
    sigmas = np.concatenate([sigmas, [last]]).astype(np.float32)
    return ts.astype(np.int64), sigmas


def flow_timesteps(sigmas: np.ndarray, num_train_timesteps: int) -> np.ndarray:
    """Training timesteps of flow sigmas, t = σ·T (the int64 cast later truncates, as the reference's)."""
    return (sigmas * num_train_timesteps).copy()


def dpm_flow_sigmas(num_inference_steps: int, num_train_timesteps: int, shift: float) -> np.ndarray:
    """DPM-Solver's flow schedule: n shifted sigmas from ~1 down, spaced like 1 − linspace(1, 1/T)."""
    unshifted = 1.0 - np.linspace(1, 1 / num_train_timesteps, num_inference_steps + 1)
    return np.flip(shift_sigmas(unshifted, shift))[:-1].copy()


def unipc_flow_sigmas(
    num_inference_steps: int, num_train_timesteps: int, sigmas: Sequence[float] | np.ndarray | None,
    shift: float, mu: float | None, time_shift_type: str, shift_terminal: float | None,
) -> np.ndarray:
    """UniPC's flow schedule: the given sigmas (or linspace(1, 1/T)), shifted by ``shift`` or by ``mu``
    (dynamic shifting), optionally stretched to end at ``shift_terminal``."""
    base = np.linspace(1, 1 / num_train_timesteps, num_inference_steps + 1)[:-1] if sigmas is None else np.array(sigmas)
    out = TIME_SHIFTS[time_shift_type](mu, base, 1.0) if mu is not None else shift_sigmas(base, shift)
    if shift_terminal:
        out = stretch_to_terminal(out, shift_terminal)
    if np.fabs(out[0] - 1) < 1e-6:
        out[0] -= 1e-6  # σ = 1 exactly would make α_t = 0 and λ = −∞
    return out


@dataclass(eq=False, kw_only=True)
class MultistepState(SchedulerState):
    """A run of a multistep solver: the schedule plus the last few converted model outputs."""

    points: list[VPPoint] = field(default_factory=list)  # (α, σ, λ) of each sigma, for the scalar algebra
    outputs: list[Tensor] = field(default_factory=list)  # newest last, at most solver_order
    lower_order_nums: int = 0  # steps taken so far, capped at solver_order (the warm-up counter)
    last_sample: Tensor | None = None  # UniPC: the sample the last predictor started from
    this_order: int = 0  # UniPC: the order of the last predictor (its corrector reuses it)


class VPMultistepScheduler(Scheduler):
    """Shared adapter of DPM-Solver++ and UniPC: VP training tables, schedule, output conversion."""

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        if self.config["rescale_betas_zero_snr"]:
            # zero terminal SNR means σ = ∞ at the last step; the reference nudges it to a finite value
            self.alphas_cumprod[-1] = 2**-24

    def _check_config(self, values: Mapping[str, Any]) -> None:
        name = type(self).__name__
        try:
            kind = sigma_schedule_name(values)
        except ValueError as err:
            raise SchedulerConfigError(f"{name}: {err}") from None
        if kind is not None and values.get("use_lu_lambdas"):
            raise SchedulerConfigError(f"{name}: only one of use_{kind}_sigmas and use_lu_lambdas can be true")
        flow = values["use_flow_sigmas"]
        if values["prediction_type"] == "flow_prediction" and not flow:
            raise SchedulerConfigError(f"{name}: prediction_type='flow_prediction' needs use_flow_sigmas=True")
        for key in ("use_dynamic_shifting", "shift_terminal"):
            if values.get(key) and not flow:
                raise SchedulerConfigError(f"{name}: {key} applies to flow sigmas only; set use_flow_sigmas=True")

    def _check_steps(self, num_inference_steps: int | None, given: Any, given_name: str) -> None:
        name = type(self).__name__
        if (num_inference_steps is None) == (given is None):
            raise ValueError(f"{name}.set_timesteps needs exactly one of num_inference_steps or {given_name}")
        if given is None:
            check_num_steps(num_inference_steps, self.num_train_timesteps, name)

    def _state(self, timesteps: np.ndarray, sigmas: np.ndarray, device: Any) -> MultistepState:
        """A fresh run from fp32 ``sigmas`` (final sigma included) and their training timesteps."""
        return MultistepState(
            timesteps=torch.from_numpy(np.asarray(timesteps)).to(device=device, dtype=torch.int64),
            sigmas=torch.from_numpy(sigmas),
            num_inference_steps=len(timesteps),
            points=vp_points(torch.from_numpy(sigmas), flow=self.config["use_flow_sigmas"]),
        )

    def _init_step_index(self, state: SchedulerState, timestep: float | Tensor) -> int:
        if state.step_index is None:
            state.step_index = state.begin_index if state.begin_index is not None else multistep_index(state.timesteps, timestep)
        return check_not_finished(state, type(self).__name__)

    def _to_solver_output(self, model_output: Tensor, sample: Tensor, point: VPPoint, data: bool = True) -> Tensor:
        """The model output as the solver's D: the data prediction x0 (thresholded if configured) or the noise."""
        alpha_t, sigma_t = operand(model_output, point.alpha), operand(model_output, point.sigma)
        if data:
            return self._threshold(self.prediction.to_denoised(model_output, sample, alpha_t, sigma_t))
        eps = self.prediction.to_epsilon(model_output, sample, alpha_t, sigma_t)
        if self.config["thresholding"]:  # threshold the x0 that ε implies, then return to ε
            x0 = self._threshold((sample - sigma_t * eps) / alpha_t)
            eps = (sample - alpha_t * x0) / sigma_t
        return eps

    def _threshold(self, x0: Tensor) -> Tensor:
        # read only this class's keys: a config switched from DDIM may carry clip_sample along
        if not self.config["thresholding"]:
            return x0
        return dynamic_threshold(x0, self.config["dynamic_thresholding_ratio"], self.config["sample_max_value"])

    def add_noise(
        self, original_samples: Tensor, noise: Tensor, timesteps: Tensor, state: SchedulerState | None = None,
    ) -> Tensor:
        """α_t·x0 + σ_t·noise at the run's sigma for each timestep (the run's current/begin step once set)."""
        state = self._current(state, "add_noise")
        if state.begin_index is None:
            schedule = state.timesteps.to(original_samples.device)
            indices = [multistep_index(schedule, t) for t in timesteps.to(original_samples.device).reshape(-1)]
        else:
            indices = self._sigma_indices(state, timesteps)
        sigma = broadcast_like(state.sigmas.to(original_samples.device, original_samples.dtype)[indices], original_samples)
        if self.config["use_flow_sigmas"]:
            return (1 - sigma) * original_samples + sigma * noise
        alpha_t = 1 / ((sigma**2 + 1) ** 0.5)
        return alpha_t * original_samples + (sigma * alpha_t) * noise
