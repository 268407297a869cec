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

import torch
from torch import Tensor

from .fp32 import F32, f32_expm1, quiet_division, step_size, times
from .multistep import VPPoint


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
