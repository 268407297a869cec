"""UniPC predictor and corrector (Zhao et al. 2023, "UniPC", arXiv:2302.04867, Alg. 2/3, B(h) form).

The predictor UniP-p extrapolates from the last p model outputs; the corrector UniC-p refines
the sample the predictor produced, once the model has been evaluated there, at no extra model
call. Both are linear in the tensors: the ρ weights solve a small Vandermonde system in the
step ratios r_k (eq. 8 of the paper), so they are scalars computed here in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from torch import Tensor

from .multistep import VPPoint, lincomb, step_size


def unipc_rhos(rks: Sequence[float], hh: float, variant: str, corrector: bool) -> tuple[list[float], float, float]:
    """ρ weights of UniP (``corrector=False``) or UniC, plus h·φ₁(hh) = e^{hh} − 1 and B(h).

    ``rks`` are the step ratios of the older outputs followed by 1 (the new point); ``hh`` is −h
    for data prediction and +h for noise prediction. B(h) = hh ("bh1") or e^{hh} − 1 ("bh2").
    """
    order = len(rks)
    h_phi_1 = math.expm1(hh)
    b_h = hh if variant == "bh1" else h_phi_1
    # b_i = i!·h·φ_{i+1}(hh) / B(h), with φ_{k+1} from the recurrence φ_{k+1} = (φ_k − 1/k!)/hh
    b, h_phi_k, factorial = [], h_phi_1 / hh - 1.0, 1
    for i in range(1, order + 1):
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1.0 / factorial
    vander = np.array([[rk ** (i - 1) for rk in rks] for i in range(1, order + 1)], dtype=np.float64)
    if corrector:
        rhos = [0.5] if order == 1 else list(np.linalg.solve(vander, b))
    elif order == 1:
        rhos = []
    elif order == 2:
        rhos = [0.5]  # the paper's choice for UniP-2, not the solution of the 1x1 system
    else:
        rhos = list(np.linalg.solve(vander[:-1, :-1], b[:-1]))
    return [float(r) for r in rhos], h_phi_1, b_h


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
    alpha_t, sigma_t = target.alpha, target.sigma
    alpha_s, sigma_s, lam_s = points[-1]
    h = step_size(lam_s, target.lam)
    rks = [step_size(lam_s, p.lam) / h for p in reversed(points[:-1])] + [1.0]
    hh = -h if predict_x0 else h
    rhos, h_phi_1, b_h = unipc_rhos(rks, hh, variant, corrector=corrected_output is not None)

    m0 = outputs[-1]
    if predict_x0:
        x_coef, scale = sigma_t / sigma_s, alpha_t
    else:
        x_coef, scale = alpha_t / alpha_s, sigma_t
    terms: list[tuple[float, Tensor]] = [(x_coef, x), (-scale * h_phi_1, m0)]
    m0_weight = 0.0
    # outputs[-(k+1)] pairs with rks[k-1]; D_k = (m_k − m0)/r_k
    for k in range(1, order):
        w = -scale * b_h * rhos[k - 1] / rks[k - 1]
        terms.append((w, outputs[-(k + 1)]))
        m0_weight -= w
    if corrected_output is not None:
        w = -scale * b_h * rhos[-1]
        terms.append((w, corrected_output))
        m0_weight -= w
    if m0_weight:
        terms.append((m0_weight, m0))
    return lincomb(terms)
