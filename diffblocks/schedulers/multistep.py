"""Shared pieces of the multistep solvers on the variance-preserving path (DPM-Solver++, UniPC).

Both samplers walk a list of k-diffusion sigmas ``σ = σ_t / α_t`` and do their algebra in the
half log-SNR ``λ = log α_t − log σ_t`` (Lu et al. 2022, arXiv:2206.00927, §3).

Numerics: (α, σ, λ) of every sigma are computed once per run with fp32 tensor kernels, and the
per-step coefficients are fp32 numpy scalars (`F32`) — the same IEEE operations diffusers does on
0-dim tensors, so results agree bit for bit, without paying a tensor dispatch (~3 µs) per scalar.
Only transcendental functions go through torch (`f32_exp` …), whose kernels are not the
correctly rounded ones numpy/libm would give.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from .base import Scheduler, SchedulerConfigError, SchedulerState, broadcast_like
from .prediction import dynamic_threshold, prediction_for
from .schedules import (
    SIGMA_SCHEDULES,
    alphas_cumprod_from_config,
    check_num_steps,
    final_sigma,
    interp_sigmas,
    sigma_schedule_name,
    sigma_to_t,
    sigmas_from_alphas_cumprod,
    spaced_timesteps,
)


F32 = np.float32  # scalar arithmetic in fp32, as the reference's 0-dim tensors do it


def _torch_f32(fn: Any, x: F32) -> F32:
    return F32(fn(torch.tensor(x, dtype=torch.float32)).item())


def f32_exp(x: F32) -> F32:
    """e^x in fp32 with torch's kernel (it differs from the correctly rounded value for ~1% of inputs)."""
    return _torch_f32(torch.exp, x)


def f32_expm1(x: F32) -> F32:
    """e^x − 1 in fp32 with torch's kernel."""
    return _torch_f32(torch.expm1, x)


def f32_sqrt(x: F32) -> F32:
    """√x in fp32 with torch's kernel (its vectorised sqrt is not always the correctly rounded one)."""
    return _torch_f32(torch.sqrt, x)


def operand(t: Tensor, c: F32) -> float | Tensor:
    """The fp32 scalar ``c`` for use in the reference's own formulas (the prediction objects):
    a 0-dim fp32 tensor when ``t`` is half precision, where torch's rounding depends on the
    operand order; the cheap Python float (identical results) for fp32/fp64 tensors."""
    return float(c) if t.dtype in (torch.float32, torch.float64) else torch.tensor(float(c), dtype=torch.float32)


def times(t: Tensor, c: F32) -> Tensor:
    """``c·t`` exactly as the reference's ``scalar_tensor * t``: torch first rounds a 0-dim fp32
    scalar on the left to a half-precision ``t``'s dtype (and does not when it is on the right)."""
    if t.dtype in (torch.float32, torch.float64):
        return t * float(c)
    return t * torch.tensor(float(c), dtype=torch.float32).to(t.dtype).item()


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


def vp_points(sigmas: Tensor) -> list[VPPoint]:
    """(α_t, σ_t, λ_t) of each k-diffusion sigma ``σ = σ_t/α_t`` (λ = +∞ at σ = 0).

    Computed with fp32 tensor kernels like the reference: converting ε to x0 divides by α_t
    (~0.006 at the noisy end), which magnifies any difference in the last bit of α_t and σ_t.
    """
    s = sigmas.to(torch.float32)
    alpha = 1 / ((s**2 + 1) ** 0.5)
    sigma = s * alpha
    lam = torch.log(alpha) - torch.log(sigma)
    return [VPPoint(F32(a), F32(b), F32(c)) for a, b, c in zip(alpha.tolist(), sigma.tolist(), lam.tolist())]


def step_size(lam_from: F32, lam_to: F32) -> F32:
    """h = λ_to − λ_from (fp32)."""
    return F32(lam_to) - F32(lam_from)


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
        self.alphas_cumprod = alphas_cumprod_from_config(self.config)
        if self.config["rescale_betas_zero_snr"]:
            # zero terminal SNR means σ = ∞ at the last step; the reference nudges it to a finite value
            self.alphas_cumprod[-1] = 2**-24
        self.prediction = prediction_for(self.config["prediction_type"], type(self).__name__)

    def _check_config(self, values: Mapping[str, Any]) -> None:
        name = type(self).__name__
        try:
            kind = sigma_schedule_name(values)
        except ValueError as err:
            raise SchedulerConfigError(f"{name}: {err}") from None
        if kind is not None and values.get("use_lu_lambdas"):
            raise SchedulerConfigError(f"{name}: only one of use_{kind}_sigmas and use_lu_lambdas can be true")

    def _new_multistep_state(self, num_inference_steps: int | None, device: Any, timesteps: Any, **schedule: Any) -> MultistepState:
        name = type(self).__name__
        if (num_inference_steps is None) == (timesteps is None):
            raise ValueError(f"{name}.set_timesteps needs exactly one of num_inference_steps or timesteps")
        if timesteps is None:
            check_num_steps(num_inference_steps, self.num_train_timesteps, name)
        ts, sigmas = vp_multistep_schedule(self.config, self.alphas_cumprod, num_inference_steps, timesteps, **schedule)
        return MultistepState(
            timesteps=torch.from_numpy(ts).to(device=device, dtype=torch.int64),
            sigmas=torch.from_numpy(sigmas),
            num_inference_steps=len(ts),
            points=vp_points(torch.from_numpy(sigmas)),
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
        return self.prediction.to_epsilon(model_output, sample, alpha_t, sigma_t)

    def _threshold(self, x0: Tensor) -> Tensor:
        # read only this class's keys: a config switched from DDIM may carry clip_sample along
        if not self.config["thresholding"]:
            return x0
        return dynamic_threshold(x0, self.config["dynamic_thresholding_ratio"], self.config["sample_max_value"])

    def add_noise(self, original_samples: Tensor, noise: Tensor, timesteps: Tensor, state: SchedulerState | None = None) -> Tensor:
        """α_t·x0 + σ_t·noise at the run's sigma for each timestep (the run's current/begin step once set)."""
        state = self._current(state, "add_noise")
        if state.begin_index is None:
            schedule = state.timesteps.to(original_samples.device)
            indices = [multistep_index(schedule, t) for t in timesteps.to(original_samples.device).reshape(-1)]
        else:
            indices = self._sigma_indices(state, timesteps)
        sigma = broadcast_like(state.sigmas.to(original_samples.device, original_samples.dtype)[indices], original_samples)
        alpha_t = 1 / ((sigma**2 + 1) ** 0.5)
        return alpha_t * original_samples + (sigma * alpha_t) * noise
