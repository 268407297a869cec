"""LMSDiscreteScheduler: linear multistep on the probability-flow ODE (k-diffusion sample_lms)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from diffblocks.schedulers.base import SchedulerOutput, SchedulerState
from diffblocks.schedulers.k_samplers import KDiffusionScheduler, to_d


def lms_coefficients(sigmas: np.ndarray, index: int, order: int) -> list[float]:
    """Linear multistep coefficients (k-diffusion sample_lms): the integrals over [sigma_i, sigma_{i+1}]
    of the Lagrange basis polynomials through the last `order` sigmas. The basis has degree <= 3, so
    2-point Gauss-Legendre quadrature integrates it exactly."""
    nodes = [float(sigmas[index - k]) for k in range(order)]
    a, b = float(sigmas[index]), float(sigmas[index + 1])
    half, mid = (b - a) / 2, (a + b) / 2
    taus = (mid - half / math.sqrt(3), mid + half / math.sqrt(3))

    def basis(j: int, tau: float) -> float:
        return math.prod((tau - nodes[k]) / (nodes[j] - nodes[k]) for k in range(order) if k != j)

    return [half * sum(basis(j, tau) for tau in taus) for j in range(order)]


@dataclass(eq=False, kw_only=True)
class LMSState(SchedulerState):
    derivatives: list[torch.Tensor] = field(default_factory=list)  # last `order` ODE slopes, oldest first


class LMSDiscreteScheduler(KDiffusionScheduler):
    """Adams-Bashforth-style multistep in sigma with coefficients from Lagrange interpolation (order up to 4)."""

    state_class = LMSState
    defaults = dict(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", trained_betas=None,
        use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False, prediction_type="epsilon",
        timestep_spacing="linspace", steps_offset=0,
    )  # fmt: skip

    def _step(
        self,
        state: LMSState,
        model_output: torch.Tensor,
        timestep: Any,
        sample: torch.Tensor,
        generator: Any = None,
        order: int = 4,
    ) -> SchedulerOutput:
        i = self._init_step_index(state, timestep)
        sigma = state.sigmas[i]
        x0 = self.prediction.to_denoised_ve(model_output, sample, sigma)
        state.derivatives = (state.derivatives + [to_d(sample, x0, sigma)])[-order:]
        order = min(i + 1, order)
        coeffs = lms_coefficients(state.sigmas.numpy(), i, order)
        prev_sample = sample + sum(c * d for c, d in zip(coeffs, reversed(state.derivatives)))
        state.step_index = i + 1
        return SchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)
