"""Scalar arithmetic exactly as diffusers' schedulers do it on 0-dim fp32 tensors, without the tensors.

diffusers computes step coefficients with 0-dim fp32 tensors (~3 µs of dispatch per operation).
fp32 numpy scalars (`F32`) give the same IEEE results for + − × ÷ at ~0.1 µs; transcendental
functions go through torch's own kernels (`f32_exp` …), which are not always the correctly rounded
ones libm/numpy give. Applying a scalar to a tensor follows torch's rounding rule (`times`).
Together these make trajectories agree with diffusers bit for bit instead of drifting an ulp a step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

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


def step_size(lam_from: F32, lam_to: F32) -> F32:
    """h = λ_to − λ_from (fp32)."""
    return F32(lam_to) - F32(lam_from)


# A schedule may repeat a sigma (Karras ending on sigma_min, flow sigmas with a final sigma_min):
# that step has h = 0 and the reference divides by it silently, inf/NaN terms then dropping out
# of the update or propagating exactly as there. Decorate scalar algebra that may see such steps.
quiet_division = np.errstate(divide="ignore", invalid="ignore")
