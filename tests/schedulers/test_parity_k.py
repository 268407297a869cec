"""Euler / Euler a / LMS / Heun against diffusers: identical timesteps and sigmas, trajectories within ATOL."""

from __future__ import annotations

import diffusers
import numpy as np
import pytest
import torch

from diffblocks import schedulers as ours

from .parity import assert_schedule_match, assert_trajectories_match, trajectory

SD = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
COMMON = [
    {},
    {**SD, "timestep_spacing": "leading", "steps_offset": 1},
    {**SD, "prediction_type": "v_prediction", "timestep_spacing": "trailing"},
    {"beta_schedule": "squaredcos_cap_v2", "prediction_type": "sample"},
]
SIGMA_SCHEDULES = [{**SD, "use_karras_sigmas": True}, {**SD, "use_exponential_sigmas": True}, {**SD, "use_beta_sigmas": True}]


def _pair(name: str, config: dict) -> tuple:
    if config.get("use_beta_sigmas") or (name == "LMSDiscreteScheduler"):
        # beta sigmas need scipy.stats on both sides; diffusers' LMS integrates with scipy.integrate
        pytest.importorskip("scipy", reason="scipy is needed by the diffusers reference here")
    return getattr(ours, name).from_config(config), getattr(diffusers, name).from_config(config)


@pytest.mark.parametrize(
    "config",
    COMMON
    + SIGMA_SCHEDULES
    + [
        {**SD, "use_karras_sigmas": True, "final_sigmas_type": "sigma_min", "sigma_min": 0.1, "sigma_max": 10.0},
        {**SD, "rescale_betas_zero_snr": True, "prediction_type": "v_prediction", "timestep_spacing": "trailing"},
        {**SD, "interpolation_type": "log_linear"},
        {**SD, "timestep_type": "continuous", "prediction_type": "v_prediction"},
    ],
)
def test_euler_parity(config: dict) -> None:
    a, b = _pair("EulerDiscreteScheduler", config)
    assert_trajectories_match(trajectory(a, 12), trajectory(b, 12))
    assert_schedule_match(a, b)


def test_euler_churn_parity() -> None:
    a, b = _pair("EulerDiscreteScheduler", SD)
    kw = {"s_churn": 0.5, "s_tmin": 0.2, "s_tmax": 8.0}
    assert_trajectories_match(trajectory(a, 10, seed=4, **kw), trajectory(b, 10, seed=4, **kw))


@pytest.mark.parametrize("custom", [{"timesteps": [999.0, 800.0, 500.5, 250.0, 10.0]}, {"sigmas": [14.0, 7.0, 2.5, 0.6, 0.1, 0.0]}])
def test_euler_custom_schedule_parity(custom: dict) -> None:
    a, b = _pair("EulerDiscreteScheduler", SD)
    set_ts = lambda s: s.set_timesteps(**custom)  # noqa: E731
    assert_trajectories_match(trajectory(a, 0, set_timesteps=set_ts), trajectory(b, 0, set_timesteps=set_ts))
    assert_schedule_match(a, b)


@pytest.mark.parametrize("config", COMMON[:3] + [{**SD, "rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}])
def test_euler_ancestral_parity(config: dict) -> None:
    a, b = _pair("EulerAncestralDiscreteScheduler", config)
    assert_trajectories_match(trajectory(a, 12, seed=7), trajectory(b, 12, seed=7))
    assert_schedule_match(a, b)


@pytest.mark.parametrize("config", COMMON + SIGMA_SCHEDULES)
def test_lms_parity(config: dict) -> None:
    """Our LMS coefficients are exact polynomial integrals; diffusers integrates an fp32-evaluated
    integrand with scipy.quad, so the two differ by a few fp32 ulps (~3e-7 relative): compared at
    1e-6 relative to the sample's magnitude (values reach ~500 with the linear betas' sigma_max 157)."""
    a, b = _pair("LMSDiscreteScheduler", config)
    assert_trajectories_match(trajectory(a, 12), trajectory(b, 12), relative=True)
    assert_schedule_match(a, b)


@pytest.mark.parametrize("config", COMMON + SIGMA_SCHEDULES[:2] + [{"beta_schedule": "exp", "clip_sample": True}])
def test_heun_parity(config: dict) -> None:
    a, b = _pair("HeunDiscreteScheduler", config)
    assert_trajectories_match(trajectory(a, 8), trajectory(b, 8))
    assert_schedule_match(a, b)


@pytest.mark.parametrize(
    "name", ["EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "LMSDiscreteScheduler", "HeunDiscreteScheduler"]
)
def test_sigma_add_noise_parity(name: str) -> None:
    a, b = _pair(name, SD)
    x0, noise = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    for s in (a, b):
        s.set_timesteps(10)
    t = a.timesteps[[0, 4, 9]]
    assert torch.equal(a.add_noise(x0, noise, t), b.add_noise(x0, noise, t))
    # img2img: a begin index makes add_noise use it for every sample
    for s in (a, b):
        s.set_begin_index(3)
    t = a.timesteps[3:4].repeat(3)
    assert torch.equal(a.add_noise(x0, noise, t), b.add_noise(x0, noise, t))


@pytest.mark.parametrize("name", ["EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler"])
def test_begin_index_img2img_parity(name: str) -> None:
    """Starting mid-schedule via set_begin_index (strength < 1) follows the same path."""
    a, b = _pair(name, SD)

    def run(s):
        s.set_timesteps(10)
        start = 4 * s.order
        s.set_begin_index(start)
        x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        x = s.add_noise(x, torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)), s.timesteps[start : start + 1])
        kw = {"generator": torch.Generator().manual_seed(2)} if "Ancestral" in name else {}
        for t in s.timesteps[start:]:
            x = s.step(0.1 * s.scale_model_input(x, t), t, x, **kw).prev_sample
        return x

    assert (run(a) - run(b)).abs().max() <= 1e-6
    assert np.isfinite(run(a).numpy()).all()


def test_heun_custom_timesteps_parity() -> None:
    a, b = _pair("HeunDiscreteScheduler", SD)
    set_ts = lambda s: s.set_timesteps(timesteps=[999.0, 700.0, 420.5, 100.0])  # noqa: E731
    assert_trajectories_match(trajectory(a, 0, set_timesteps=set_ts), trajectory(b, 0, set_timesteps=set_ts))
    assert_schedule_match(a, b)
