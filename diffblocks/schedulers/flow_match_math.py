"""Rectified-flow sampling math: sigma shifts (SD3, Flux) and the Euler step on x_t = (1−σ)x0 + σ·noise.

The model predicts the velocity v = noise − x0, so dx/dσ = v and an Euler step is exact for a
straight path (Liu et al. 2022, arXiv:2209.03003; Esser et al. 2024, arXiv:2403.03206).
The numpy formulas keep the reference's operation order so shifted sigmas agree bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from torch import Tensor

from .fp32 import F32, times


def calculate_shift(
    image_seq_len: int,
    base_seq_len: int = 256,
    max_seq_len: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    """Flux's resolution-dependent ``mu``: linear in the number of image tokens, ``base_shift`` at
    ``base_seq_len`` and ``max_shift`` at ``max_seq_len`` (extrapolated beyond)."""
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return image_seq_len * slope + (base_shift - slope * base_seq_len)


def shift_sigmas(sigmas: np.ndarray, shift: float) -> np.ndarray:
    """SD3's timestep shift (Esser et al. 2024, eq. 23): σ' = sσ / (1 + (s − 1)σ); s > 1 spends more steps at high noise."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def time_shift_exponential(mu: float, sigmas: np.ndarray, power: float = 1.0) -> np.ndarray:
    """Flux's dynamic shift: σ' = e^μ / (e^μ + (1/σ − 1)^power), i.e. ``shift_sigmas`` with s = e^μ at power 1."""
    return math.exp(mu) / (math.exp(mu) + (1 / sigmas - 1) ** power)


def time_shift_linear(mu: float, sigmas: np.ndarray, power: float = 1.0) -> np.ndarray:
    """The linear variant: σ' = μ / (μ + (1/σ − 1)^power)."""
    return mu / (mu + (1 / sigmas - 1) ** power)


TIME_SHIFTS: dict[str, Callable[[float, np.ndarray, float], np.ndarray]] = {
    "exponential": time_shift_exponential,
    "linear": time_shift_linear,
}


def stretch_to_terminal(sigmas: np.ndarray, terminal: float) -> np.ndarray:
    """Rescale 1 − σ so the schedule ends exactly at σ = ``terminal`` (LTX-Video's ``shift_terminal``)."""
    one_minus = 1 - sigmas
    return 1 - one_minus / (one_minus[-1] / (1 - terminal))


def flow_euler_step(x: Tensor, velocity: Tensor, sigma: F32, sigma_next: F32) -> Tensor:
    """x_{σ'} = x_σ + (σ' − σ)·v: one Euler step of the probability-flow ODE dx/dσ = v."""
    return x + times(velocity, F32(sigma_next) - F32(sigma))


def flow_stochastic_step(x: Tensor, velocity: Tensor, sigma: F32, sigma_next: F32, noise: Tensor) -> Tensor:
    """Jump to the predicted x0 = x − σv, then re-noise to σ' with fresh noise (ancestral flow sampling)."""
    x0 = x - times(velocity, sigma)
    return times(x0, F32(1.0) - F32(sigma_next)) + times(noise, sigma_next)


def flow_add_noise(x0: Tensor, noise: Tensor, sigma: Tensor) -> Tensor:
    """The forward process x_σ = σ·noise + (1 − σ)·x0 (img2img: noise a clean latent to the start sigma)."""
    return sigma * noise + (1.0 - sigma) * x0
