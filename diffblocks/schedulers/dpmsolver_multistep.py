"""DPMSolverMultistepScheduler: DPM-Solver++ 1/2/3M and SDE-DPM-Solver++ (A1111's "DPM++ 2M", "DPM++ 2M SDE"),
on a model's VP noise schedule or, with ``use_flow_sigmas``, on a flow-matching one (Flux, SD3, Sana).

DPM-Solver++ (Lu et al. 2022, arXiv:2211.01095) and, for configs that still ask for it, the original
noise-prediction DPM-Solver (arXiv:2206.00927). Each update is a pure function of the current sample,
the last ``order`` data predictions (``denoised``, oldest first), their noise levels and the target
level; with ``noise`` it is the SDE variant (SDE-DPM-Solver++, same paper §5; k-diffusion
``sample_dpmpp_2m_sde``). The class reads diffusers' scheduler_config.json, picks the order of each
step (warm-up and the low-order final steps) and keeps the history in the run's state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from diffblocks.noise import randn_tensor
from diffblocks.schedulers.base import SchedulerConfigError, SchedulerOutput
from diffblocks.schedulers.fp32 import F32, f32_exp, f32_sqrt, quiet_division, step_size
from diffblocks.schedulers.fp32 import times as _times
from diffblocks.schedulers.multistep import MultistepState, VPMultistepScheduler, VPPoint, dpm_flow_sigmas, flow_timesteps, vp_multistep_schedule
from diffblocks.schedulers.schedules import final_sigma, sigma_schedule_name


# --------------------------------------------------------------------------- the updates
# Scalars are fp32 (`F32`) and each tensor expression keeps the reference's operation order, so a
# trajectory reproduces diffusers' to the last bit or two instead of drifting by an ulp per step.

def _differences(denoised: Sequence[Tensor], points: Sequence[VPPoint], h: F32) -> tuple[Tensor, ...]:
    """D1 (order 2) or (D1, D2) (order 3): divided differences of the model outputs (data or noise
    predictions) in λ, measured in units of the current step h (r_i = h_i / h)."""
    m0, m1 = denoised[-1], denoised[-2]
    r0 = step_size(points[-2].lam, points[-1].lam) / h
    d1_0 = _times(m0 - m1, F32(1.0) / r0)
    if len(denoised) == 2:
        return (d1_0,)
    r1 = step_size(points[-3].lam, points[-2].lam) / h
    d1_1 = _times(m1 - denoised[-3], F32(1.0) / r1)
    d1 = d1_0 + _times(d1_0 - d1_1, r0 / (r0 + r1))
    d2 = _times(d1_0 - d1_1, F32(1.0) / (r0 + r1))
    return d1, d2


@quiet_division
def dpm_solver_pp_update(
    x: Tensor,
    denoised: Sequence[Tensor],
    points: Sequence[VPPoint],
    target: VPPoint,
    solver_type: str = "midpoint",
    noise: Tensor | None = None,
) -> Tensor:
    """One DPM-Solver++(k)M step from ``points[-1]`` to ``target``, k = len(denoised) ∈ {1, 2, 3}.

    ``points`` are the noise levels of the ``denoised`` history. With h = λ_t − λ_s and D0 = the
    newest data prediction, D1, D2 its scaled differences (Alg. 2 of the paper):

        ODE:  x_t = (σ_t/σ_s)·x − α_t(e^{−h} − 1)·D0 + c1·D1 + c2·D2
        SDE:  x_t = (σ_t/σ_s)e^{−h}·x + α_t(1 − e^{−2h})·D0 + c1·D1 + c2·D2 + σ_t√(1 − e^{−2h})·z

    c1 = ½ of the D0 weight for ``solver_type="midpoint"``; "heun" and the third-order terms use
    the φ-function weights α_t(φ₁-like + 1), as written below.
    """
    order = len(denoised)
    alpha_t, sigma_t = target.alpha, target.sigma
    h = step_size(points[-1].lam, target.lam)
    diffs = _differences(denoised, points, h) if order > 1 else ()

    if noise is None:
        em1 = f32_exp(-h) - F32(1.0)  # e^{−h} − 1 < 0
        out = _times(x, sigma_t / points[-1].sigma) - _times(denoised[-1], alpha_t * em1)
        if order == 2 and solver_type == "midpoint":
            out = out - _times(diffs[0], F32(0.5) * (alpha_t * em1))
        elif order >= 2:
            out = out + _times(diffs[0], alpha_t * (em1 / h + F32(1.0)))
        if order == 3:
            out = out - _times(diffs[1], alpha_t * ((em1 + h) / (h * h) - F32(0.5)))
        return out

    one_m_e2 = F32(1.0) - f32_exp(F32(-2.0) * h)  # 1 − e^{−2h}
    out = _times(x, sigma_t / points[-1].sigma * f32_exp(-h)) + _times(denoised[-1], alpha_t * one_m_e2)
    if order == 2 and solver_type == "midpoint":
        out = out + _times(diffs[0], F32(0.5) * (alpha_t * one_m_e2))
    elif order >= 2:
        out = out + _times(diffs[0], alpha_t * (one_m_e2 / (F32(-2.0) * h) + F32(1.0)))
    if order == 3:
        # diffusers' SDE third-order D2 weight ends in −½ where k-diffusion's sample_dpmpp_3m_sde
        # has +½; we keep diffusers' so a diffusers config gives the same images.
        two_h = F32(2.0) * h
        out = out + _times(diffs[1], alpha_t * ((one_m_e2 - two_h) / (two_h * two_h) - F32(0.5)))
    return out + _times(noise, sigma_t * f32_sqrt(one_m_e2))


@quiet_division
def dpm_solver_update(
    x: Tensor,
    eps: Sequence[Tensor],
    points: Sequence[VPPoint],
    target: VPPoint,
    solver_type: str = "midpoint",
    noise: Tensor | None = None,
) -> Tensor:
    """One multistep DPM-Solver step on noise predictions (Lu et al. 2022, "DPM-Solver",
    arXiv:2206.00927; with ``noise``, the SDE variant of the DPM-Solver++ paper §5), order = len(eps).

        ODE:  x_t = (α_t/α_s)·x − σ_t(e^h − 1)·ε0 − c1·D1 − c2·D2
        SDE:  x_t = (α_t/α_s)·x − 2σ_t(e^h − 1)·ε0 − c1·D1 + σ_t√(e^{2h} − 1)·z   (orders 1, 2)

    The older "dpmsolver" algorithms of diffusers; "dpmsolver++" (`dpm_solver_pp_update`) is the
    recommended one for guided sampling.
    """
    order = len(eps)
    sigma_t = target.sigma
    h = step_size(points[-1].lam, target.lam)
    diffs = _differences(eps, points, h) if order > 1 else ()
    em1 = f32_exp(h) - F32(1.0)  # e^h − 1 > 0
    x_coef = target.alpha / points[-1].alpha
    if noise is None:
        out = _times(x, x_coef) - _times(eps[-1], sigma_t * em1)
        if order == 2 and solver_type == "midpoint":
            out = out - _times(diffs[0], F32(0.5) * (sigma_t * em1))
        elif order >= 2:
            out = out - _times(diffs[0], sigma_t * (em1 / h - F32(1.0)))
        if order == 3:
            out = out - _times(diffs[1], sigma_t * ((em1 - h) / (h * h) - F32(0.5)))
        return out
    if order == 3:
        raise ValueError("SDE-DPM-Solver (noise prediction) has no third-order update")
    out = _times(x, x_coef) - _times(eps[-1], F32(2.0) * (sigma_t * em1))
    if order == 2 and solver_type == "midpoint":
        out = out - _times(diffs[0], sigma_t * em1)
    elif order == 2:
        out = out - _times(diffs[0], F32(2.0) * (sigma_t * (em1 / h - F32(1.0))))
    return out + _times(noise, sigma_t * f32_sqrt(f32_exp(F32(2.0) * h) - F32(1.0)))

# Values other diffusers solvers write into the same keys; diffusers reads them as these,
# which is what makes from_config(DEISMultistepScheduler / UniPC config) work.
_ALGORITHM_ALIASES = {"deis": "dpmsolver++"}
_SOLVER_TYPE_ALIASES = {"logrho": "midpoint", "bh1": "midpoint", "bh2": "midpoint"}


class DPMSolverMultistepScheduler(VPMultistepScheduler):
    """DPM-Solver++ (Lu et al. 2022, arXiv:2211.01095), its SDE variant and the original noise-prediction
    DPM-Solver, configured by a diffusers scheduler_config.json."""

    defaults: ClassVar[dict[str, Any]] = {
        "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
        "trained_betas": None, "solver_order": 2, "prediction_type": "epsilon", "thresholding": False,
        "dynamic_thresholding_ratio": 0.995, "sample_max_value": 1.0, "algorithm_type": "dpmsolver++",
        "solver_type": "midpoint", "lower_order_final": True, "euler_at_final": False,
        "use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False,
        "use_lu_lambdas": False, "use_flow_sigmas": False, "flow_shift": 1.0, "final_sigmas_type": "zero",
        "lambda_min_clipped": -math.inf, "variance_type": None, "timestep_spacing": "linspace",
        "steps_offset": 0, "rescale_betas_zero_snr": False, "use_dynamic_shifting": False,
        "time_shift_type": "exponential",
    }
    choices: ClassVar[dict[str, tuple[Any, ...]]] = {
        # "dpmsolver"/"sde-dpmsolver" (the noise-prediction DPM-Solver) are deprecated in diffusers;
        # kept so that old configs run as they did there
        "algorithm_type": ("dpmsolver++", "sde-dpmsolver++", "dpmsolver", "sde-dpmsolver"),
        "solver_type": ("midpoint", "heun"),
        "solver_order": (1, 2, 3),
        "variance_type": (None, "learned", "learned_range"),
        "prediction_type": ("epsilon", "v_prediction", "sample", "flow_prediction"),
        "time_shift_type": ("exponential",),
    }

    def __init__(self, **config: Any) -> None:
        for key, aliases in (("algorithm_type", _ALGORITHM_ALIASES), ("solver_type", _SOLVER_TYPE_ALIASES)):
            if key in config:
                config[key] = aliases.get(config[key], config[key])
        super().__init__(**config)

    def _check_config(self, values: dict[str, Any]) -> None:
        super()._check_config(values)
        others = [k for k in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas") if values[k]]
        if values["use_flow_sigmas"] and others:
            # the reference silently lets the other schedule win and then reads its sigmas as flow sigmas
            raise SchedulerConfigError(f"DPMSolverMultistepScheduler: use_flow_sigmas cannot be combined with {others[0]}")
        algorithm = values["algorithm_type"]
        if algorithm in ("dpmsolver", "sde-dpmsolver"):
            # noise prediction cannot land on σ = 0, where ε no longer determines x
            if values["final_sigmas_type"] == "zero":
                raise SchedulerConfigError(f"DPMSolverMultistepScheduler: algorithm_type={algorithm!r} needs final_sigmas_type='sigma_min'")
            if values["prediction_type"] == "flow_prediction":
                raise SchedulerConfigError(f"DPMSolverMultistepScheduler: algorithm_type={algorithm!r} does not take flow_prediction")
        if algorithm == "sde-dpmsolver" and values["solver_order"] == 3:
            raise SchedulerConfigError("DPMSolverMultistepScheduler: algorithm_type='sde-dpmsolver' has orders 1 and 2 only")

    def new_state(
        self, num_inference_steps: int | None = None, device: torch.device | str | None = None,
        timesteps: list[int] | None = None, mu: float | None = None,
    ) -> MultistepState:
        """Timesteps and sigmas for one run of ``num_inference_steps`` (or the given integer ``timesteps``).

        With ``use_flow_sigmas`` the run walks a flow-matching schedule shifted by ``flow_shift``, or
        by e^mu when ``use_dynamic_shifting`` (Flux passes ``mu = calculate_shift(image_seq_len)``).
        """
        cfg = self.config
        self._check_steps(num_inference_steps, timesteps, "timesteps")
        if mu is not None and not cfg["use_dynamic_shifting"]:
            raise ValueError("DPMSolverMultistepScheduler: mu needs use_dynamic_shifting=True (and use_flow_sigmas=True)")
        if cfg["use_flow_sigmas"]:
            if cfg["use_dynamic_shifting"] and mu is None:
                raise ValueError(
                    "DPMSolverMultistepScheduler: use_dynamic_shifting=True needs mu, e.g. calculate_shift(image_seq_len)"
                )
            if timesteps is not None:
                raise ValueError("DPMSolverMultistepScheduler: custom timesteps cannot be combined with use_flow_sigmas")
            # diffusers stores e^mu into config.flow_shift, changing later runs too; here it is per run
            shift = float(np.exp(mu)) if mu is not None else cfg["flow_shift"]
            sigmas = dpm_flow_sigmas(num_inference_steps, self.num_train_timesteps, shift)
            last = final_sigma(cfg["final_sigmas_type"], self.alphas_cumprod)
            all_sigmas = np.concatenate([sigmas, [last]]).astype(np.float32)
            return self._state(flow_timesteps(sigmas, self.num_train_timesteps), all_sigmas, device)
        alphas, sigmas = self.alphas_cumprod.sqrt(), (1 - self.alphas_cumprod).sqrt()
        lambdas = torch.log(alphas) - torch.log(sigmas)
        # lambda_min_clipped drops the noisiest training steps (needed by the cosine schedule)
        clipped = int(torch.searchsorted(torch.flip(lambdas, [0]), self.config["lambda_min_clipped"]))
        kind = sigma_schedule_name(cfg) or ("lu" if cfg["use_lu_lambdas"] else None)
        ts, sigmas = vp_multistep_schedule(
            cfg, self.alphas_cumprod, num_inference_steps, timesteps, kind=kind,
            last_timestep=self.num_train_timesteps - clipped, karras_round=cfg["beta_schedule"] != "squaredcos_cap_v2",
        )
        return self._state(ts, sigmas, device)

    def _step(
        self, state: MultistepState, model_output: Tensor, timestep: float | Tensor, sample: Tensor,
        generator: Any = None, variance_noise: Tensor | None = None,
    ) -> SchedulerOutput:
        cfg = self.config
        i = self._init_step_index(state, timestep)
        n = len(state.timesteps)
        few_steps = cfg["lower_order_final"] and n < 15
        # the last step drops to first order when it lands on σ = 0 (higher orders divide by h = ∞)
        first_order_final = i == n - 1 and (cfg["euler_at_final"] or few_steps or cfg["final_sigmas_type"] == "zero")
        second_order_final = i == n - 2 and few_steps

        if cfg["variance_type"] in ("learned", "learned_range") and cfg["prediction_type"] == "epsilon":
            # DeepFloyd IF predicts (ε, variance) for 3 image channels; the solver only needs ε
            model_output = model_output[:, :3]
        data = cfg["algorithm_type"] in ("dpmsolver++", "sde-dpmsolver++")  # else DPM-Solver on noise predictions
        converted = self._to_solver_output(model_output, sample, state.points[i], data=data)
        state.outputs = [*state.outputs, converted][-cfg["solver_order"]:]

        noise = None
        if cfg["algorithm_type"].startswith("sde-"):
            if variance_noise is not None:
                noise = variance_noise.to(device=converted.device, dtype=torch.float32)
            else:
                noise = randn_tensor(converted.shape, generator=generator, device=converted.device, dtype=torch.float32)

        if cfg["solver_order"] == 1 or state.lower_order_nums < 1 or first_order_final:
            order = 1
        elif cfg["solver_order"] == 2 or state.lower_order_nums < 2 or second_order_final:
            order = 2
        else:
            order = 3
        update = dpm_solver_pp_update if data else dpm_solver_update
        prev_sample = update(
            sample.to(torch.float32), state.outputs[-order:], state.points[i - order + 1 : i + 1],
            state.points[i + 1], cfg["solver_type"], noise,
        )
        state.lower_order_nums = min(state.lower_order_nums + 1, cfg["solver_order"])
        state.step_index = i + 1
        return SchedulerOutput(prev_sample=prev_sample.to(converted.dtype))
