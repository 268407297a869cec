"""UniPCMultistepScheduler: the UniPC predictor-corrector (A1111/ComfyUI "UniPC").

UniPC (Zhao et al. 2023, arXiv:2302.04867, Alg. 2/3, B(h) form): the predictor UniP-p extrapolates
from the last p model outputs; the corrector UniC-p refines the sample the predictor produced once
the model has been evaluated there, at no extra model call. Both are linear in the tensors; the rho
weights solve a small Vandermonde system in the step ratios r_k (eq. 8 of the paper). The class reads
diffusers' scheduler_config.json, chooses each step's order and keeps the history (outputs, last
sample, last order) in the run's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from diffblocks.schedulers.base import SchedulerConfigError, SchedulerOutput
from diffblocks.schedulers.fp32 import F32, f32_expm1, quiet_division, step_size, times
from diffblocks.schedulers.multistep import MultistepState, VPMultistepScheduler, VPPoint, flow_timesteps, unipc_flow_sigmas, vp_multistep_schedule
from diffblocks.schedulers.schedules import karras_sigmas, sigma_schedule_name, sigmas_from_alphas_cumprod


# --------------------------------------------------------------------------- the updates
# Scalars are fp32 (`F32`) and each tensor expression keeps the reference's operation order (the
# rho system is solved with torch in fp32 as well), so trajectories match diffusers' bit for bit.

def solve_rhos(rks: Sequence[F32], hh: F32, h_phi_1: F32, b_h: F32, size: int) -> Tensor:
    """ρ from the first ``size`` rows/columns of R·ρ = b (eq. 8), solved in fp32 like the reference.

    R[i][k] = r_k^i is the Vandermonde matrix of the step ratios ``rks`` (older outputs first, then
    1); b_i = i!·h·φ_{i+1}(hh)/B(h), with φ_{k+1} from the recurrence φ_{k+1} = (φ_k − 1/k!)/hh.
    """
    r = torch.tensor([float(rk) for rk in rks[:size]], dtype=torch.float32)
    vander = torch.stack([torch.pow(r, i) for i in range(size)])
    b, factorial = [], 1
    h_phi_k = h_phi_1 / hh - F32(1.0)
    for i in range(1, size + 1):
        b.append(h_phi_k * F32(factorial) / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - F32(1.0 / factorial)
    return torch.linalg.solve(vander, torch.tensor(b, dtype=torch.float32))


def _weighted_sum(rhos: Tensor, diffs: list[Tensor]) -> Tensor:
    """Σ_k ρ_k D_k, contracted the way the reference contracts it (einsum over a stacked k axis)."""
    stacked = torch.stack(diffs, dim=1)
    return torch.einsum("k,bkc...->bc...", rhos.to(stacked.device), stacked)


@quiet_division
def unipc_update(
    x: Tensor,
    outputs: Sequence[Tensor],
    points: Sequence[VPPoint],
    target: VPPoint,
    variant: str = "bh2",
    predict_x0: bool = True,
    corrected_output: Tensor | None = None,
) -> Tensor:
    """One UniP-p step (or UniC-p when ``corrected_output`` is given) from ``points[-1]`` to ``target``.

    ``outputs`` are the last p converted model outputs (data or noise predictions, oldest first)
    at the noise levels ``points``. With D_k = (m_k − m0)/r_k, data prediction reads

        x_t = (σ_t/σ_s)·x − α_t(e^{−h} − 1)·m0 − α_t·B(h)·Σ ρ_k D_k
    and the corrector adds ρ_p·(m_t − m0) inside the sum, m_t being the model output at x_t.
    Noise prediction swaps the roles of α and σ and uses +h.
    """
    order = len(outputs)
    h = step_size(points[-1].lam, target.lam)
    rks = [step_size(points[-1].lam, p.lam) / h for p in reversed(points[:-1])] + [F32(1.0)]
    m0 = outputs[-1]
    diffs = [(outputs[-(k + 1)] - m0) / float(rks[k - 1]) for k in range(1, order)]
    hh = -h if predict_x0 else h
    h_phi_1 = f32_expm1(hh)  # h·φ₁(hh) = e^{hh} − 1
    b_h = hh if variant == "bh1" else h_phi_1  # B(h)

    if predict_x0:
        base = times(x, target.sigma / points[-1].sigma) - times(m0, target.alpha * h_phi_1)
        scale = target.alpha * b_h
    else:
        base = times(x, target.alpha / points[-1].alpha) - times(m0, target.sigma * h_phi_1)
        scale = target.sigma * b_h

    if corrected_output is None:
        if not diffs:
            return base
        # UniP-2 uses ρ = ½ (the paper's choice) rather than solving its 1x1 system
        rhos = torch.tensor([0.5]) if order == 2 else solve_rhos(rks, hh, h_phi_1, b_h, order - 1)
        return base - times(_weighted_sum(rhos.to(x.dtype), diffs), scale)  # ρ rounded to x's dtype, as there

    rhos = (torch.tensor([0.5]) if order == 1 else solve_rhos(rks, hh, h_phi_1, b_h, order)).to(x.dtype)
    correction = times(corrected_output - m0, F32(rhos[-1].item()))
    if diffs:
        correction = _weighted_sum(rhos[:-1], diffs) + correction
    return base - times(correction, scale)

# DPM-Solver's solver types mean "bh2" here, as in diffusers (config switching between the two)
_SOLVER_TYPE_ALIASES = {"midpoint": "bh2", "heun": "bh2", "logrho": "bh2"}


class UniPCMultistepScheduler(VPMultistepScheduler):
    """UniPC (Zhao et al. 2023, arXiv:2302.04867) on the VP noise schedule of a diffusers model."""

    defaults: ClassVar[dict[str, Any]] = {
        "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
        "trained_betas": None, "solver_order": 2, "prediction_type": "epsilon", "thresholding": False,
        "dynamic_thresholding_ratio": 0.995, "sample_max_value": 1.0, "predict_x0": True,
        "solver_type": "bh2", "lower_order_final": True, "disable_corrector": [], "solver_p": None,
        "use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False,
        "use_flow_sigmas": False, "flow_shift": 1.0, "timestep_spacing": "linspace", "steps_offset": 0,
        "final_sigmas_type": "zero", "rescale_betas_zero_snr": False, "use_dynamic_shifting": False,
        "time_shift_type": "exponential", "sigma_min": None, "sigma_max": None, "shift_terminal": None,
    }
    choices: ClassVar[dict[str, tuple[Any, ...]]] = {
        "solver_type": ("bh1", "bh2"),
        "solver_order": (1, 2, 3),
        "predict_x0": (True, False),
        # a foreign predictor object cannot come from a JSON config
        "solver_p": (None,),
        "prediction_type": ("epsilon", "v_prediction", "sample", "flow_prediction"),
        "time_shift_type": ("exponential", "linear"),
    }

    def __init__(self, **config: Any) -> None:
        if "solver_type" in config:
            config["solver_type"] = _SOLVER_TYPE_ALIASES.get(config["solver_type"], config["solver_type"])
        super().__init__(**config)

    def _check_config(self, values: dict[str, Any]) -> None:
        super()._check_config(values)
        if not values["predict_x0"] and values["thresholding"]:
            raise SchedulerConfigError("UniPCMultistepScheduler: thresholding needs predict_x0=True")
        if not values["predict_x0"] and values["final_sigmas_type"] == "zero":
            # the noise-prediction update weighs ε by σ_t(e^h − 1) = 0·∞ at σ = 0 (NaN in diffusers)
            raise SchedulerConfigError("UniPCMultistepScheduler: predict_x0=False needs final_sigmas_type='sigma_min'")
        if values["use_flow_sigmas"] and (values["use_exponential_sigmas"] or values["use_beta_sigmas"]):
            # the reference reads such a VP schedule as flow sigmas; only Karras has a flow mapping there
            raise SchedulerConfigError("UniPCMultistepScheduler: use_flow_sigmas combines with use_karras_sigmas only")

    def new_state(
        self, num_inference_steps: int | None = None, device: torch.device | str | None = None,
        sigmas: list[float] | np.ndarray | None = None, mu: float | None = None,
    ) -> MultistepState:
        """Timesteps and sigmas for one run of ``num_inference_steps``.

        With ``use_flow_sigmas`` the run walks a flow-matching schedule (custom ``sigmas`` allowed),
        shifted by ``flow_shift`` or, with ``use_dynamic_shifting``, by ``mu`` (ignored otherwise,
        as in diffusers, so Flux's pipeline can always pass it).
        """
        cfg, name, n_train = self.config, type(self).__name__, self.num_train_timesteps
        if sigmas is not None:
            if not cfg["use_flow_sigmas"]:
                raise ValueError(f"{name}: custom sigmas need use_flow_sigmas=True")
            if num_inference_steps is not None and num_inference_steps != len(sigmas):
                raise ValueError(f"{name}: num_inference_steps={num_inference_steps} but {len(sigmas)} sigmas were given")
            num_inference_steps = len(sigmas)
        else:
            self._check_steps(num_inference_steps, None, "sigmas")
        if cfg["use_dynamic_shifting"] and mu is None:
            raise ValueError(f"{name}: use_dynamic_shifting=True needs mu, e.g. calculate_shift(image_seq_len)")
        kind, ends = sigma_schedule_name(cfg), (cfg["sigma_min"], cfg["sigma_max"])
        if not cfg["use_flow_sigmas"]:
            ts, all_sigmas = vp_multistep_schedule(
                cfg, self.alphas_cumprod, num_inference_steps, kind=kind, sigma_range=ends, final_from_schedule=True,
            )
            return self._state(ts, all_sigmas, device)
        if kind == "karras":
            if sigmas is not None:
                raise ValueError(f"{name}: custom sigmas cannot be combined with use_karras_sigmas")
            train = sigmas_from_alphas_cumprod(self.alphas_cumprod)
            lo = train[0].item() if ends[0] is None else ends[0]
            hi = train[-1].item() if ends[1] is None else ends[1]
            flow_sigmas = karras_sigmas(lo, hi, num_inference_steps)
            flow_sigmas = flow_sigmas / (flow_sigmas + 1)  # VP sigma -> flow sigma, σ/(1 + σ)
        else:
            flow_sigmas = unipc_flow_sigmas(
                num_inference_steps, n_train, sigmas, cfg["flow_shift"], mu if cfg["use_dynamic_shifting"] else None,
                cfg["time_shift_type"], cfg["shift_terminal"],
            )
        last = flow_sigmas[-1] if cfg["final_sigmas_type"] == "sigma_min" else 0.0
        return self._state(flow_timesteps(flow_sigmas, n_train), np.concatenate([flow_sigmas, [last]]).astype(np.float32), device)

    def _step(
        self, state: MultistepState, model_output: Tensor, timestep: float | Tensor, sample: Tensor, generator: Any = None,
    ) -> SchedulerOutput:
        cfg, pts = self.config, state.points
        i = self._init_step_index(state, timestep)
        predict_x0, variant = cfg["predict_x0"], cfg["solver_type"]
        converted = self._to_solver_output(model_output, sample, pts[i], data=predict_x0)

        # UniC: now that the model has seen the predictor's sample, correct it (no extra model call)
        if i > 0 and (i - 1) not in cfg["disable_corrector"] and state.last_sample is not None:
            k = state.this_order
            sample = unipc_update(
                state.last_sample, state.outputs[-k:], pts[i - k : i], pts[i], variant, predict_x0, corrected_output=converted,
            )

        state.outputs = [*state.outputs, converted][-cfg["solver_order"]:]
        order = min(cfg["solver_order"], len(state.timesteps) - i) if cfg["lower_order_final"] else cfg["solver_order"]
        state.this_order = min(order, state.lower_order_nums + 1)  # warm-up: no more history than exists
        state.last_sample = sample
        k = state.this_order
        prev_sample = unipc_update(sample, state.outputs[-k:], pts[i - k + 1 : i + 1], pts[i + 1], variant, predict_x0)
        state.lower_order_nums = min(state.lower_order_nums + 1, cfg["solver_order"])
        state.step_index = i + 1
        return SchedulerOutput(prev_sample=prev_sample)
