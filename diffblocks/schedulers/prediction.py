"""What the denoiser predicts: a tiny object per `prediction_type` that turns a model output into x0.

Two parameterisations of the same noisy sample are in use:
- VP ("alpha/sigma"): x_t = alpha_t * x0 + sigma_t * noise (DDPM, DDIM, PNDM, DPM-Solver, UniPC);
- VE ("k-diffusion"): x = x0 + sigma * noise, the model seeing x / sqrt(1 + sigma^2)
  (Euler, Heun, LMS: Karras et al. 2022 treat a VP model as a denoiser of this x).
The formulas keep the reference's arithmetic order so trajectories agree to fp32 rounding.
Beyond the prediction type, x0 may be clipped or dynamically thresholded (`postprocess_x0`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

Scalar = float | torch.Tensor


class Prediction:
    """Base: `to_denoised` / `to_epsilon` in the VP form, `to_denoised_ve` in the k-diffusion form."""

    name = ""

    def to_denoised(self, model_output: torch.Tensor, sample: torch.Tensor, alpha_t: Scalar, sigma_t: Scalar) -> torch.Tensor:
        raise NotImplementedError

    def to_epsilon(self, model_output: torch.Tensor, sample: torch.Tensor, alpha_t: Scalar, sigma_t: Scalar) -> torch.Tensor:
        """The noise implied by the model output (DDIM's "direction pointing to x_t")."""
        return (sample - alpha_t * self.to_denoised(model_output, sample, alpha_t, sigma_t)) / sigma_t

    def to_denoised_ve(self, model_output: torch.Tensor, sample: torch.Tensor, sigma: Scalar) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def add_noise(original: torch.Tensor, noise: torch.Tensor, alpha_t: Scalar, sigma_t: Scalar) -> torch.Tensor:
        """The forward process x_t = alpha_t * x0 + sigma_t * noise (flow: alpha_t = 1 - sigma_t)."""
        return alpha_t * original + sigma_t * noise

    def __repr__(self) -> str:
        return f"Prediction({self.name!r})"


class Epsilon(Prediction):
    """The model predicts the added noise (Ho et al. 2020)."""

    name = "epsilon"

    def to_denoised(self, model_output, sample, alpha_t, sigma_t):
        return (sample - sigma_t * model_output) / alpha_t

    def to_epsilon(self, model_output, sample, alpha_t, sigma_t):
        return model_output

    def to_denoised_ve(self, model_output, sample, sigma):
        return sample - sigma * model_output


class VPrediction(Prediction):
    """The model predicts v = alpha_t * noise - sigma_t * x0 (Salimans & Ho 2022, progressive distillation)."""

    name = "v_prediction"

    def to_denoised(self, model_output, sample, alpha_t, sigma_t):
        return alpha_t * sample - sigma_t * model_output

    def to_epsilon(self, model_output, sample, alpha_t, sigma_t):
        return alpha_t * model_output + sigma_t * sample

    def to_denoised_ve(self, model_output, sample, sigma):
        return model_output * (-sigma / (sigma**2 + 1) ** 0.5) + (sample / (sigma**2 + 1))


class Sample(Prediction):
    """The model predicts x0 directly."""

    name = "sample"

    def to_denoised(self, model_output, sample, alpha_t, sigma_t):
        return model_output

    def to_denoised_ve(self, model_output, sample, sigma):
        return model_output


class Flow(Prediction):
    """Rectified flow: x_t = (1 - t) x0 + t noise, the model predicts v = noise - x0 (Lipman et al. 2023)."""

    name = "flow_prediction"

    def to_denoised(self, model_output, sample, alpha_t, sigma_t):
        return sample - sigma_t * model_output

    def to_denoised_ve(self, model_output, sample, sigma):
        return sample - sigma * model_output


PREDICTION_TYPES: dict[str, Prediction] = {p.name: p for p in (Epsilon(), VPrediction(), Sample(), Flow())}


def prediction_for(name: str, owner: str = "scheduler") -> Prediction:
    """The prediction object for a `prediction_type` config value."""
    if name not in PREDICTION_TYPES:
        raise ValueError(f"{owner}: prediction_type={name!r} is not supported; choose one of {sorted(PREDICTION_TYPES)}")
    return PREDICTION_TYPES[name]


def dynamic_threshold(x0: torch.Tensor, ratio: float, max_value: float) -> torch.Tensor:
    """Dynamic thresholding (Saharia et al. 2022, Imagen): clamp each sample to its `ratio` quantile of |x0|
    (at least 1, at most `max_value`) and divide by it."""
    dtype = x0.dtype
    batch, channels, *rest = x0.shape
    # quantile needs fp32/fp64 (and clamp has no CPU half kernel)
    flat = x0.float() if dtype not in (torch.float32, torch.float64) else x0
    flat = flat.reshape(batch, channels * int(np.prod(rest)))
    s = torch.quantile(flat.abs(), ratio, dim=1).clamp(min=1, max=max_value).unsqueeze(1)
    return (torch.clamp(flat, -s, s) / s).reshape(batch, channels, *rest).to(dtype)


def postprocess_x0(x0: torch.Tensor, config: Mapping[str, Any]) -> torch.Tensor:
    """Apply `thresholding` (wins) or `clip_sample` from a scheduler config to a predicted x0."""
    if config.get("thresholding"):
        return dynamic_threshold(x0, config["dynamic_thresholding_ratio"], config["sample_max_value"])
    if config.get("clip_sample"):
        return x0.clamp(-config["clip_sample_range"], config["clip_sample_range"])
    return x0
