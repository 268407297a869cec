"""Sampler steps as short pure functions; the scheduler classes only look up their arguments.

VP steps take alpha_bar values (x_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise); k-diffusion steps take
sigmas (x = x0 + sigma noise). Arithmetic follows the reference order so fp32 results agree.
"""

from __future__ import annotations

import math

import numpy as np
import torch

Scalar = float | torch.Tensor


# --------------------------------------------------------------------------- VP (alpha_bar) steps


def ddpm_posterior_mean(x0: torch.Tensor, sample: torch.Tensor, alpha_bar: Scalar, alpha_bar_prev: Scalar) -> torch.Tensor:
    """Mean of q(x_{t-1} | x_t, x0) (Ho et al. 2020, eq. 7)."""
    alpha_t = alpha_bar / alpha_bar_prev
    beta_t = 1 - alpha_t
    x0_coeff = (alpha_bar_prev ** (0.5) * beta_t) / (1 - alpha_bar)
    sample_coeff = alpha_t ** (0.5) * (1 - alpha_bar_prev) / (1 - alpha_bar)
    return x0_coeff * x0 + sample_coeff * sample


def ddpm_posterior_variance(alpha_bar: Scalar, alpha_bar_prev: Scalar) -> torch.Tensor:
    """beta~_t = (1 - a_{t-1}) / (1 - a_t) * beta_t, the "fixed_small" variance (Ho et al. 2020, eq. 7)."""
    beta_t = 1 - alpha_bar / alpha_bar_prev
    return torch.clamp((1 - alpha_bar_prev) / (1 - alpha_bar) * beta_t, min=1e-20)


def ddim_step(
    x0: torch.Tensor, eps: torch.Tensor, alpha_bar_prev: Scalar, std_dev: Scalar, noise: torch.Tensor | None
) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12): x_{t-1} = sqrt(a_prev) x0 + sqrt(1 - a_prev - s^2) eps + s z."""
    prev = alpha_bar_prev ** (0.5) * x0 + (1 - alpha_bar_prev - std_dev**2) ** (0.5) * eps
    return prev if noise is None else prev + std_dev * noise


def ddim_variance(alpha_bar: Scalar, alpha_bar_prev: Scalar) -> torch.Tensor:
    """sigma_t^2 / eta^2 of DDIM (Song et al. 2021, eq. 16)."""
    return ((1 - alpha_bar_prev) / (1 - alpha_bar)) * (1 - alpha_bar / alpha_bar_prev)


def pndm_transfer(sample: torch.Tensor, eps: torch.Tensor, alpha_bar: Scalar, alpha_bar_prev: Scalar) -> torch.Tensor:
    """The transfer part phi(x_t, eps, t, t-delta) of pseudo numerical methods (Liu et al. 2022, eq. 11)."""
    sample_coeff = (alpha_bar_prev / alpha_bar) ** (0.5)
    denom = alpha_bar * (1 - alpha_bar_prev) ** (0.5) + (alpha_bar * (1 - alpha_bar) * alpha_bar_prev) ** (0.5)
    return sample_coeff * sample - (alpha_bar_prev - alpha_bar) * eps / denom


def plms_eps(ets: list[torch.Tensor]) -> torch.Tensor:
    """Linear multistep (Adams-Bashforth) combination of the last 1-4 eps (Liu et al. 2022, eq. 12)."""
    if len(ets) == 2:
        return (3 * ets[-1] - ets[-2]) / 2
    if len(ets) == 3:
        return (23 * ets[-1] - 16 * ets[-2] + 5 * ets[-3]) / 12
    return (1 / 24) * (55 * ets[-1] - 59 * ets[-2] + 37 * ets[-3] - 9 * ets[-4])


# --------------------------------------------------------------------------- k-diffusion (sigma) steps


def to_d(x: torch.Tensor, denoised: torch.Tensor, sigma: Scalar) -> torch.Tensor:
    """dx/dsigma of the probability-flow ODE (Karras et al. 2022, eq. 4 with sigma(t) = t)."""
    return (x - denoised) / sigma


def euler_step(x: torch.Tensor, denoised: torch.Tensor, sigma: Scalar, sigma_next: Scalar) -> torch.Tensor:
    """Euler's method on the PF-ODE (Karras et al. 2022, Algorithm 2 without the correction)."""
    return x + to_d(x, denoised, sigma) * (sigma_next - sigma)


def ancestral_sigmas(sigma_from: Scalar, sigma_to: Scalar) -> tuple[Scalar, Scalar]:
    """(sigma_down, sigma_up) so a deterministic step to sigma_down plus fresh noise sigma_up lands at sigma_to."""
    sigma_up = (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5
    return (sigma_to**2 - sigma_up**2) ** 0.5, sigma_up


def euler_ancestral_step(
    x: torch.Tensor, denoised: torch.Tensor, sigma: Scalar, sigma_next: Scalar, noise: torch.Tensor
) -> torch.Tensor:
    """Euler ancestral (k-diffusion sample_euler_ancestral): Euler to sigma_down, then add noise * sigma_up."""
    sigma_down, sigma_up = ancestral_sigmas(sigma, sigma_next)
    return x + to_d(x, denoised, sigma) * (sigma_down - sigma) + noise * sigma_up


def heun_correct(
    x_start: torch.Tensor, x: torch.Tensor, d_first: torch.Tensor, denoised: torch.Tensor, sigma_next: Scalar, dt: Scalar
) -> torch.Tensor:
    """Heun's second-order correction (Karras et al. 2022, Algorithm 1, line 8): redo the step from
    `x_start` with the average of the first slope and the slope at the Euler prediction `x`."""
    return x_start + (d_first + to_d(x, denoised, sigma_next)) / 2 * dt


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
