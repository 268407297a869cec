"""UniPC predictor and corrector (Zhao et al. 2023, "UniPC", arXiv:2302.04867, Alg. 2/3, B(h) form).

The predictor UniP-p extrapolates from the last p model outputs; the corrector UniC-p refines
the sample the predictor produced once the model has been evaluated there, at no extra model
call. Both are linear in the tensors; the ρ weights solve a small Vandermonde system in the
step ratios r_k (eq. 8 of the paper).

Scalars are fp32 (`F32`) and each tensor expression keeps the reference's operation order (the
ρ system is solved with torch in fp32 as well), so trajectories match diffusers' bit for bit
rather than drifting by an ulp per step.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .fp32 import F32, f32_expm1, step_size, times
from .multistep import VPPoint


def bh_system(rks: Sequence[F32], hh: F32, variant: str) -> tuple[F32, F32, Tensor, list[F32]]:
    """h·φ₁ = e^{hh} − 1, B(h), the Vandermonde matrix R[i][k] = r_k^i and the right-hand side b.

    ``rks`` are the step ratios of the older outputs followed by 1; ``hh`` is −h for data
    prediction, +h for noise prediction. B(h) = hh ("bh1") or e^{hh} − 1 ("bh2");
    b_i = i!·h·φ_{i+1}(hh)/B(h), with φ_{k+1} from the recurrence φ_{k+1} = (φ_k − 1/k!)/hh.
    """
    h_phi_1 = f32_expm1(hh)
    b_h = hh if variant == "bh1" else f32_expm1(hh)
    r = torch.tensor([float(rk) for rk in rks], dtype=torch.float32)
    rows, b, factorial = [], [], 1
    # a zero-length step (Karras sigmas ending on sigma_min twice) makes b 0/0; it is then unused
    with np.errstate(invalid="ignore", divide="ignore"):
        h_phi_k = h_phi_1 / hh - F32(1.0)
        for i in range(1, len(rks) + 1):
            rows.append(torch.pow(r, i - 1))
            b.append(h_phi_k * F32(factorial) / b_h)
            factorial *= i + 1
            h_phi_k = h_phi_k / hh - F32(1.0 / factorial)
    return h_phi_1, b_h, torch.stack(rows), b


def _weighted_sum(rhos: Tensor, diffs: list[Tensor]) -> Tensor:
    """Σ_k ρ_k D_k, contracted the way the reference contracts it (einsum over a stacked k axis)."""
    stacked = torch.stack(diffs, dim=1)
    return torch.einsum("k,bkc...->bc...", rhos.to(stacked.device), stacked)


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
    h_phi_1, b_h, vander, b = bh_system(rks, hh, variant)

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
        rhos = torch.tensor([0.5]) if order == 2 else torch.linalg.solve(vander[:-1, :-1], torch.tensor(b[:-1], dtype=torch.float32))
        return base - times(_weighted_sum(rhos.to(x.dtype), diffs), scale)  # ρ rounded to x's dtype, as there

    rhos = torch.tensor([0.5]) if order == 1 else torch.linalg.solve(vander, torch.tensor(b, dtype=torch.float32))
    rhos = rhos.to(x.dtype)
    correction = times(corrected_output - m0, F32(rhos[-1].item()))
    if diffs:
        correction = _weighted_sum(rhos[:-1], diffs) + correction
    return base - times(correction, scale)
