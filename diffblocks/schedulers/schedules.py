"""Noise schedules: beta schedules, timestep spacings and sigma schedules, each a small function.

Everything here is a pure function of numbers; the scheduler classes pick entries from the
named tables (`BETA_SCHEDULES`, `TIMESTEP_SPACINGS`, `SIGMA_SCHEDULES`, `TIME_SHIFTS`) by their
config keys.
Arithmetic deliberately follows the order (and numpy/torch dtypes) of the reference
implementation, so that timesteps and sigmas match diffusers' bit for bit in fp32.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from diffblocks.schedulers.errors import SchedulerConfigError

# --------------------------------------------------------------------------- beta schedules


def linear_betas(num_train_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Betas evenly spaced between `beta_start` and `beta_end` (DDPM, Ho et al. 2020)."""
    return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)


def scaled_linear_betas(num_train_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Square of betas evenly spaced in sqrt space: the latent-diffusion (Stable Diffusion) schedule."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2


def _betas_from_alpha_bar(
    num_train_timesteps: int, alpha_bar: Callable[[float], float], max_beta: float = 0.999,
) -> torch.Tensor:
    betas = [
        min(1 - alpha_bar((i + 1) / num_train_timesteps) / alpha_bar(i / num_train_timesteps), max_beta)
        for i in range(num_train_timesteps)
    ]
    return torch.tensor(betas, dtype=torch.float32)


def cosine_betas(num_train_timesteps: int, beta_start: float = 0.0, beta_end: float = 0.0) -> torch.Tensor:
    """"squaredcos_cap_v2": the cosine schedule of Nichol & Dhariwal 2021 (improved DDPM), betas capped at 0.999."""
    return _betas_from_alpha_bar(num_train_timesteps, lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2)


def exp_betas(num_train_timesteps: int, beta_start: float = 0.0, beta_end: float = 0.0) -> torch.Tensor:
    """"exp": alpha_bar(t) = exp(-12 t)."""
    return _betas_from_alpha_bar(num_train_timesteps, lambda t: math.exp(t * -12.0))


def sigmoid_betas(num_train_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """"sigmoid": betas following a sigmoid over [-6, 6], rescaled into [beta_start, beta_end] (GeoDiff)."""
    return torch.sigmoid(torch.linspace(-6, 6, num_train_timesteps)) * (beta_end - beta_start) + beta_start


BETA_SCHEDULES: dict[str, Callable[[int, float, float], torch.Tensor]] = {
    "linear": linear_betas,
    "scaled_linear": scaled_linear_betas,
    "squaredcos_cap_v2": cosine_betas,
    "exp": exp_betas,
    "sigmoid": sigmoid_betas,
}


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Shift and scale sqrt(alpha_bar) so the last step has zero SNR (Lin et al. 2023, Algorithm 1)."""
    alphas_bar_sqrt = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = alphas_bar_sqrt[0].clone(), alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt -= last
    alphas_bar_sqrt *= first / (first - last)
    alphas_bar = alphas_bar_sqrt**2
    alphas = torch.cat([alphas_bar[0:1], alphas_bar[1:] / alphas_bar[:-1]])
    return 1 - alphas


def betas_from_config(config: Mapping[str, Any]) -> torch.Tensor:
    """The training betas a diffusers-style config describes (`trained_betas` wins over `beta_schedule`)."""
    if config.get("trained_betas") is not None:
        betas = torch.tensor(np.asarray(config["trained_betas"]), dtype=torch.float32)
    else:
        schedule = BETA_SCHEDULES[config["beta_schedule"]]
        betas = schedule(config["num_train_timesteps"], config["beta_start"], config["beta_end"])
    if config.get("rescale_betas_zero_snr"):
        betas = rescale_zero_terminal_snr(betas)
    return betas


def alphas_cumprod_from_config(config: Mapping[str, Any]) -> torch.Tensor:
    """alpha_bar_t = prod_{s<=t} (1 - beta_s), fp32, one entry per training timestep."""
    return torch.cumprod(1.0 - betas_from_config(config), dim=0)


# --------------------------------------------------------------------------- timestep spacing
# Each returns float64 timesteps in descending order; callers round/cast as their reference does.
# `end` replaces num_train_timesteps as the upper bound (DPM-Solver clips it by lambda_min);
# `drop_last` asks for num_steps + 1 points and drops the final one (the multistep solvers' spacing).


def linspace_timesteps(
    num_train: int, num_steps: int, steps_offset: int = 0, *, end: int | None = None, drop_last: bool = False,
) -> np.ndarray:
    """Evenly spaced over [0, end - 1], both ends included (Lin et al. 2023, table 2 "linspace")."""
    end = num_train if end is None else end
    t = np.linspace(0, end - 1, num_steps + int(drop_last))[::-1]
    return (t[:-1] if drop_last else t).copy()


def leading_timesteps(
    num_train: int, num_steps: int, steps_offset: int = 0, *, end: int | None = None, drop_last: bool = False,
) -> np.ndarray:
    """Multiples of end // n starting at 0, plus `steps_offset` (the original DDIM/SD spacing)."""
    end = num_train if end is None else end
    n = num_steps + int(drop_last)
    t = (np.arange(0, n) * (end // n)).round()[::-1]
    return (t[:-1] if drop_last else t) + steps_offset


def trailing_timesteps(
    num_train: int, num_steps: int, steps_offset: int = 0, *, end: int | None = None, drop_last: bool = False,
) -> np.ndarray:
    """Evenly spaced down from the last training step (end - 1) (Lin et al. 2023, "trailing")."""
    end = num_train if end is None else end
    return np.arange(end, 0, -(num_train / num_steps)).round() - 1


TIMESTEP_SPACINGS: dict[str, Callable[..., np.ndarray]] = {
    "linspace": linspace_timesteps,
    "leading": leading_timesteps,
    "trailing": trailing_timesteps,
}


def spaced_timesteps(spacing: str, num_train: int, num_steps: int, steps_offset: int = 0, **kwargs: Any) -> np.ndarray:
    """Dispatch on `timestep_spacing`; an unknown name is an error listing the known ones."""
    if spacing not in TIMESTEP_SPACINGS:
        raise ValueError(f"timestep_spacing={spacing!r} is not supported; choose one of {sorted(TIMESTEP_SPACINGS)}")
    return TIMESTEP_SPACINGS[spacing](num_train, num_steps, steps_offset, **kwargs)


def check_num_steps(num_steps: int | None, num_train: int, owner: str) -> int:
    """Validate `num_inference_steps` for schedules drawn from the training timesteps."""
    if num_steps is None:
        raise ValueError(f"{owner}.set_timesteps needs num_inference_steps (or custom timesteps/sigmas)")
    if not isinstance(num_steps, (int, np.integer)) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(f"{owner}: num_inference_steps must be a positive integer, got {num_steps!r}")
    if num_steps > num_train:
        raise SchedulerConfigError(
            f"{owner}: num_inference_steps={num_steps} is larger than num_train_timesteps={num_train}; "
            "the model was trained on only that many noise levels"
        )
    return int(num_steps)


# --------------------------------------------------------------------------- sigmas (k-diffusion view)


def sigmas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> np.ndarray:
    """sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t): the noise level of x / sqrt(alpha_bar) (fp32, ascending in t)."""
    return (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).cpu().numpy()


def interp_sigmas(timesteps: np.ndarray, train_sigmas: np.ndarray) -> np.ndarray:
    """Sigma at fractional timesteps by linear interpolation in the training table."""
    return np.interp(timesteps, np.arange(0, len(train_sigmas)), train_sigmas)


def sigma_to_t(sigmas: np.ndarray | Sequence[float], log_sigmas: np.ndarray) -> np.ndarray:
    """Fractional training timestep of each sigma, interpolating linearly in log-sigma."""
    sigmas = np.asarray(sigmas)
    log_sigma = np.log(np.maximum(sigmas, 1e-10)).reshape(-1)
    dists = log_sigma - log_sigmas[:, None]
    low = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=log_sigmas.shape[0] - 2)
    w = np.clip((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[low + 1]), 0, 1)
    return ((1 - w) * low + w * (low + 1)).reshape(sigmas.shape)


def karras_sigmas(sigma_min: float, sigma_max: float, num_steps: int, rho: float = 7.0) -> np.ndarray:
    """Karras et al. 2022 (EDM), eq. 5: evenly spaced in sigma^(1/rho), descending."""
    ramp = np.linspace(0, 1, num_steps)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho


def exponential_sigmas(sigma_min: float, sigma_max: float, num_steps: int) -> np.ndarray:
    """Evenly spaced in log sigma, descending (k-diffusion get_sigmas_exponential)."""
    return np.exp(np.linspace(math.log(sigma_max), math.log(sigma_min), num_steps))


def beta_sigmas(sigma_min: float, sigma_max: float, num_steps: int, alpha: float = 0.6, beta: float = 0.6) -> np.ndarray:
    """Sigmas at Beta(0.6, 0.6) quantiles (Lee et al. 2024, "Beta Sampling is All You Need"); needs scipy."""
    try:
        import scipy.stats
    except ImportError as err:  # scipy is optional: only this schedule needs it
        raise ImportError("use_beta_sigmas=True needs scipy (pip install scipy)") from err
    ppf = scipy.stats.beta.ppf(1 - np.linspace(0, 1, num_steps), alpha, beta)
    return np.array([sigma_min + p * (sigma_max - sigma_min) for p in ppf])


SIGMA_SCHEDULES: dict[str, Callable[[float, float, int], np.ndarray]] = {
    "karras": karras_sigmas,
    "exponential": exponential_sigmas,
    "beta": beta_sigmas,
}

# config flag -> SIGMA_SCHEDULES key
SIGMA_SCHEDULE_FLAGS = {"use_karras_sigmas": "karras", "use_exponential_sigmas": "exponential", "use_beta_sigmas": "beta"}


def sigma_schedule_name(config: Mapping[str, Any]) -> str | None:
    """Which `use_*_sigmas` flag is on (None for the plain interpolated schedule); more than one is an error."""
    on = [flag for flag in SIGMA_SCHEDULE_FLAGS if config.get(flag)]
    if len(on) > 1:
        raise ValueError(f"only one of {', '.join(SIGMA_SCHEDULE_FLAGS)} can be true, got {', '.join(on)}")
    return SIGMA_SCHEDULE_FLAGS[on[0]] if on else None


def final_sigma(final_sigmas_type: str, alphas_cumprod: torch.Tensor) -> float | torch.Tensor:
    """The sigma the last step lands on: 0 ("zero") or the smallest training sigma ("sigma_min")."""
    if final_sigmas_type == "zero":
        return 0.0
    if final_sigmas_type == "sigma_min":
        return ((1 - alphas_cumprod[0]) / alphas_cumprod[0]) ** 0.5
    raise ValueError(f"final_sigmas_type={final_sigmas_type!r} is not supported; choose 'zero' or 'sigma_min'")


# --------------------------------------------------------------------------- flow-matching sigma shifts
# Rectified flow x_t = (1 - sigma) x0 + sigma noise (SD3, Flux); numpy formulas in the reference's order.


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
