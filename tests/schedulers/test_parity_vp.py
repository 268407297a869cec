"""DDPM / DDIM / PNDM against diffusers: identical timesteps, trajectories within ATOL at every step."""

from __future__ import annotations

import diffusers
import pytest
import torch

from diffblocks import schedulers as ours

from .parity import assert_schedule_match, assert_trajectories_match, trajectory

COMMON = [
    {},
    {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "steps_offset": 1},
    {"beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction", "timestep_spacing": "trailing"},
    {"prediction_type": "sample", "timestep_spacing": "linspace"},
    {"rescale_betas_zero_snr": True, "prediction_type": "v_prediction", "timestep_spacing": "trailing"},
    {"thresholding": True, "sample_max_value": 2.0},
    {"clip_sample": False, "trained_betas": torch.linspace(1e-4, 2e-2, 1000).tolist()},
]


def _pair(name: str, config: dict) -> tuple:
    return getattr(ours, name).from_config(config), getattr(diffusers, name).from_config(config)


@pytest.mark.parametrize("config", COMMON)
@pytest.mark.parametrize("steps", [10])
def test_ddim_parity(config: dict, steps: int) -> None:
    a, b = _pair("DDIMScheduler", config)
    assert_trajectories_match(trajectory(a, steps), trajectory(b, steps))
    assert_schedule_match(a, b)


@pytest.mark.parametrize("options", [{"eta": 1.0}, {"eta": 0.5, "use_clipped_model_output": True}])
def test_ddim_eta_parity(options: dict) -> None:
    a, b = _pair("DDIMScheduler", {"set_alpha_to_one": False, "clip_sample": False})
    assert_trajectories_match(trajectory(a, 12, seed=3, **options), trajectory(b, 12, seed=3, **options))


@pytest.mark.parametrize(
    "config",
    COMMON[:4]
    + [
        {"variance_type": "fixed_large", "clip_sample": False},
        {"variance_type": "fixed_small_log", "beta_schedule": "sigmoid"},
        {"thresholding": True, "dynamic_thresholding_ratio": 0.9, "sample_max_value": 1.5, "prediction_type": "v_prediction"},
        {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing", "clip_sample_range": 2.0},
    ],
)
def test_ddpm_parity(config: dict) -> None:
    a, b = _pair("DDPMScheduler", config)
    assert_trajectories_match(trajectory(a, 15, seed=1), trajectory(b, 15, seed=1))
    assert_schedule_match(a, b)


def test_ddpm_learned_range_parity() -> None:
    a, b = _pair("DDPMScheduler", {"variance_type": "learned_range"})
    for s in (a, b):
        s.set_timesteps(8)
    x = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    xa, xb = x.clone(), x.clone()
    ga, gb = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for t in a.timesteps:
        out = torch.cat([0.1 * xa, torch.tanh(xa)], dim=1)  # eps and the variance interpolation frac
        xa = a.step(out, t, xa, generator=ga).prev_sample
        xb = b.step(torch.cat([0.1 * xb, torch.tanh(xb)], dim=1), t, xb, generator=gb).prev_sample
        assert (xa - xb).abs().max() <= 1e-6


def test_ddpm_custom_timesteps_parity() -> None:
    a, b = _pair("DDPMScheduler", {})
    ts = [900, 700, 400, 100, 0]
    set_ts = lambda s: s.set_timesteps(timesteps=ts)  # noqa: E731
    assert_trajectories_match(trajectory(a, 0, seed=2, set_timesteps=set_ts), trajectory(b, 0, seed=2, set_timesteps=set_ts))


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"skip_prk_steps": True, "steps_offset": 1, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
        {"prediction_type": "v_prediction", "timestep_spacing": "trailing", "set_alpha_to_one": True},
        {"skip_prk_steps": True, "timestep_spacing": "linspace"},
    ],
)
def test_pndm_parity(config: dict) -> None:
    a, b = _pair("PNDMScheduler", config)
    assert_trajectories_match(trajectory(a, 15), trajectory(b, 15))
    assert_schedule_match(a, b)


@pytest.mark.parametrize("name", ["DDPMScheduler", "DDIMScheduler", "PNDMScheduler"])
def test_vp_add_noise_parity(name: str) -> None:
    a, b = _pair(name, {"beta_schedule": "scaled_linear"})
    x0 = torch.randn(3, 4, 8, 8)
    noise = torch.randn(3, 4, 8, 8)
    t = torch.tensor([999, 500, 3])
    assert torch.equal(a.add_noise(x0, noise, t), b.add_noise(x0, noise, t))


@pytest.mark.parametrize("name", ["DDPMScheduler", "DDIMScheduler"])
@pytest.mark.parametrize("zero_snr", [False, True])
def test_vp_get_velocity_parity(name: str, zero_snr: bool) -> None:
    # the v-prediction training target; with zero terminal SNR, v at t=999 is exactly -x0
    a, b = _pair(name, {"beta_schedule": "scaled_linear", "rescale_betas_zero_snr": zero_snr})
    x0 = torch.randn(3, 4, 8, 8)
    noise = torch.randn(3, 4, 8, 8)
    t = torch.tensor([999, 500, 3])
    assert torch.equal(a.get_velocity(x0, noise, t), b.get_velocity(x0, noise, t))
    if zero_snr:
        torch.testing.assert_close(a.get_velocity(x0, noise, t)[0], -x0[0], rtol=0, atol=1e-6)
