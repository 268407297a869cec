"""DPM-Solver++ multistep updates (Lu et al. 2022, "DPM-Solver++", arXiv:2211.01095), and the
original noise-prediction DPM-Solver (arXiv:2206.00927) for configs that still ask for it.

Each update is a pure function of the current sample, the last ``order`` data predictions
(``denoised``, oldest first), their noise levels and the target level. With ``noise`` it is the
SDE variant (SDE-DPM-Solver++, same paper §5; k-diffusion ``sample_dpmpp_2m_sde``).

Scalars are fp32 (`F32`) and each tensor expression keeps the reference's operation order, so a
trajectory reproduces diffusers' to the last bit or two instead of drifting by an ulp per step.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from .fp32 import F32, f32_exp, f32_sqrt, quiet_division, step_size
from .fp32 import times as _times
from .multistep import VPPoint


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
