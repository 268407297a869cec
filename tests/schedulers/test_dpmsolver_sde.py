"""DPM++ SDE (DPMSolverSDEScheduler) against diffusers: same schedule, trajectories within ATOL
with the same Brownian noise (same seed, torchsde's Brownian interval on both sides)."""

from __future__ import annotations

import diffusers
import pytest
import torch

from diffblocks import schedulers as ours
from diffblocks.schedulers import scheduler_from_name

from .parity import assert_schedule_match, assert_trajectories_match, trajectory

SD = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "noise_sampler_seed": 7}
CONFIGS = [
    {"noise_sampler_seed": 3},
    SD,
    {**SD, "use_karras_sigmas": True},
    {**SD, "timestep_spacing": "leading", "steps_offset": 1},
    {**SD, "prediction_type": "v_prediction", "timestep_spacing": "trailing"},
    {**SD, "use_exponential_sigmas": True},
]


def _pair(config: dict) -> tuple:
    return ours.DPMSolverSDEScheduler.from_config(config), diffusers.DPMSolverSDEScheduler.from_config(config)


@pytest.mark.filterwarnings("ignore:Should have:UserWarning")  # diffusers' side: torchsde notes fp32 rounding at the ends
@pytest.mark.parametrize("config", CONFIGS)
def test_dpmpp_sde_parity(config: dict) -> None:
    a, b = _pair(config)
    ours_xs, ref_xs = trajectory(a, 8), trajectory(b, 8)
    assert len(ours_xs) == 2 * 8 - 1  # two model calls per step, one for the final Euler step
    assert_trajectories_match(ours_xs, ref_xs)
    assert_schedule_match(a, b)
    assert a.timesteps.dtype == torch.float64


@pytest.mark.filterwarnings("ignore:Should have:UserWarning")
def test_dpmpp_sde_seed_from_global_rng_matches_and_s_noise() -> None:
    """Without noise_sampler_seed both draw the tree's seed from torch's global generator."""
    a, b = _pair({k: v for k, v in SD.items() if k != "noise_sampler_seed"})
    torch.manual_seed(11)
    ours_xs = trajectory(a, 6, s_noise=0.7)
    torch.manual_seed(11)
    ref_xs = trajectory(b, 6, s_noise=0.7)
    assert_trajectories_match(ours_xs, ref_xs)
    torch.manual_seed(12)
    assert (trajectory(a, 6, s_noise=0.7)[-1] - ours_xs[-1]).abs().max() > 1e-3  # another seed, other noise


@pytest.mark.filterwarnings("ignore:Should have:UserWarning")
def test_dpmpp_sde_seed_from_generator_is_reproducible() -> None:
    """Our pipelines pass a generator: it seeds the Brownian motion, so a seeded run repeats."""
    a = ours.DPMSolverSDEScheduler.from_config({k: v for k, v in SD.items() if k != "noise_sampler_seed"})
    first = trajectory(a, 5, seed=1)
    assert torch.equal(first[-1], trajectory(a, 5, seed=1)[-1])
    assert not torch.equal(first[-1], trajectory(a, 5, seed=2)[-1])


@pytest.mark.filterwarnings("ignore:Should have:UserWarning")
def test_dpmpp_sde_img2img_and_add_noise_parity() -> None:
    a, b = _pair(SD)

    def run(s):
        s.set_timesteps(10)
        start = 4 * s.order
        s.set_begin_index(start)
        x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        x = s.add_noise(x, torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)), s.timesteps[start : start + 1])
        for t in s.timesteps[start:]:
            x = s.step(0.1 * s.scale_model_input(x, t), t, x).prev_sample
        return x

    assert (run(a) - run(b)).abs().max() <= 1e-6


@pytest.mark.parametrize("name, karras", [("DPM++ SDE", False), ("DPM++ SDE Karras", True), ("dpmpp_sde", False)])
def test_dpmpp_sde_sampler_names(name: str, karras: bool) -> None:
    scheduler = scheduler_from_name(name, {"beta_schedule": "scaled_linear", "steps_offset": 1})
    assert isinstance(scheduler, ours.DPMSolverSDEScheduler)
    assert scheduler.config.use_karras_sigmas is karras and scheduler.config.steps_offset == 1
