"""UniPCMultistepScheduler against diffusers: identical schedules, trajectories within ATOL (1e-6, fp32) at every step."""

from __future__ import annotations

import diffusers
import numpy as np
import pytest
import torch

from diffblocks import schedulers as ours
from diffblocks.schedulers import SchedulerConfigError, calculate_shift

from .parity import SHAPE, assert_schedule_match, assert_trajectories_match, fake_denoiser, trajectory

SD = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "steps_offset": 1}

CONFIGS = [
    {},
    {**SD, "timestep_spacing": "trailing"},
    {**SD, "use_karras_sigmas": True},
    {**SD, "use_karras_sigmas": True, "final_sigmas_type": "sigma_min", "solver_order": 3},
    {"solver_order": 3, "lower_order_final": False, "final_sigmas_type": "sigma_min"},
    {"solver_type": "bh1", "timestep_spacing": "leading", "final_sigmas_type": "sigma_min"},
    {"predict_x0": False, "solver_type": "bh1", "solver_order": 3, "final_sigmas_type": "sigma_min"},
    {"predict_x0": False, "prediction_type": "v_prediction", "final_sigmas_type": "sigma_min"},
    {"prediction_type": "v_prediction", "rescale_betas_zero_snr": True, "timestep_spacing": "trailing"},
    {"prediction_type": "sample", "thresholding": True, "disable_corrector": [0, 1]},
    {"solver_order": 1, "use_exponential_sigmas": True},
    {"beta_schedule": "squaredcos_cap_v2", "solver_type": "midpoint"},  # DPM's solver types read as bh2
]


def _pair(config: dict) -> tuple:
    return ours.UniPCMultistepScheduler.from_config(config), diffusers.UniPCMultistepScheduler.from_config(config)


@pytest.mark.parametrize("steps", [7, 20])
@pytest.mark.parametrize("config", CONFIGS)
def test_parity(config: dict, steps: int) -> None:
    a, b = _pair(config)
    assert_trajectories_match(trajectory(a, steps), trajectory(b, steps))
    assert_schedule_match(a, b)


FLOW = {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}
FLOW_CASES = [
    ({**FLOW, "flow_shift": 5.0}, lambda s: s.set_timesteps(12)),  # Wan 2.1's UniPC
    ({**FLOW, "flow_shift": 3.0, "final_sigmas_type": "sigma_min", "solver_order": 3}, lambda s: s.set_timesteps(9)),
    ({**FLOW, "use_dynamic_shifting": True}, lambda s: s.set_timesteps(10, mu=calculate_shift(4096))),  # Flux
    ({**FLOW, "use_dynamic_shifting": True, "time_shift_type": "linear", "shift_terminal": 0.05}, lambda s: s.set_timesteps(10, mu=1.2)),
    ({**FLOW, "use_dynamic_shifting": True}, lambda s: s.set_timesteps(sigmas=np.linspace(1.0, 1 / 8, 8), mu=0.8)),
    ({**FLOW, "flow_shift": 3.0}, lambda s: s.set_timesteps(8, mu=0.8)),  # mu is ignored without dynamic shifting
    ({**FLOW, "use_karras_sigmas": True, "final_sigmas_type": "sigma_min"}, lambda s: s.set_timesteps(10)),
    (
        {"use_flow_sigmas": True, "prediction_type": "v_prediction", "flow_shift": 2.0, "solver_type": "bh1", "final_sigmas_type": "sigma_min"},
        lambda s: s.set_timesteps(10),
    ),
]


@pytest.mark.parametrize("config, set_timesteps", FLOW_CASES)
def test_flow_sigmas_parity(config: dict, set_timesteps) -> None:
    a, b = _pair(config)
    assert_trajectories_match(trajectory(a, 0, set_timesteps=set_timesteps), trajectory(b, 0, set_timesteps=set_timesteps))
    assert_schedule_match(a, b)
    x0, noise = torch.ones(SHAPE), torch.full(SHAPE, 0.5)
    t = a.timesteps[2:3]
    assert torch.equal(a.add_noise(x0, noise, t), b.add_noise(x0, noise, t))


def test_karras_ends_pinned_by_the_config() -> None:
    a, b = _pair({**SD, "use_karras_sigmas": True, "sigma_min": 0.05, "sigma_max": 10.0})
    for s in (a, b):
        s.set_timesteps(12)
    assert_schedule_match(a, b)


def test_bh1_lands_on_sigma_zero_without_nan() -> None:
    # diffusers computes α_t·B(h)·0 with B(h) = −∞ on the last bh1 step and returns NaN there;
    # we skip the empty sum, so the run ends on the (finite) first-order update
    a, b = _pair({"solver_type": "bh1"})
    ours_xs, ref_xs = trajectory(a, 10), trajectory(b, 10)
    assert_trajectories_match(ours_xs[:-1], ref_xs[:-1])
    assert torch.isnan(ref_xs[-1]).all() and torch.isfinite(ours_xs[-1]).all()


def test_add_noise_and_begin_index_parity() -> None:
    a, b = _pair(SD)
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    for s in (a, b):
        s.set_timesteps(10)
        s.set_begin_index(3)
    t = a.timesteps[3:4].repeat(SHAPE[0])
    xa, xb = a.add_noise(x0, noise, t), b.add_noise(x0, noise, t)
    assert torch.equal(xa, xb)
    for t in a.timesteps[3:]:
        xa = a.step(fake_denoiser(xa, t), t, xa).prev_sample
        xb = b.step(fake_denoiser(xb, t), t, xb).prev_sample
        assert (xa - xb).abs().max() <= 1e-6


def test_corrector_history_lives_in_the_state() -> None:
    shared = ours.UniPCMultistepScheduler(solver_order=3)
    states = [shared.new_state(8), shared.new_state(5)]
    xs = [torch.randn(SHAPE, generator=torch.Generator().manual_seed(k)) for k in range(2)]
    for i in range(8):
        for k, st in enumerate(states):
            if i < len(st.timesteps):
                t = st.timesteps[i]
                xs[k] = shared.step(fake_denoiser(xs[k], t), t, xs[k], state=st).prev_sample
    for k, steps in enumerate((8, 5)):
        alone = diffusers.UniPCMultistepScheduler(solver_order=3)
        alone.set_timesteps(steps)
        x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(k))
        for t in alone.timesteps:
            x = alone.step(fake_denoiser(x, t), t, x).prev_sample
        assert torch.equal(xs[k], x)


@pytest.mark.parametrize(
    "config, match",
    [
        ({"solver_type": "bh3"}, "solver_type='bh3' is not supported"),
        ({"solver_order": 5}, "solver_order=5 is not supported"),
        ({"use_flow_sigmas": True, "use_exponential_sigmas": True}, "use_flow_sigmas combines with use_karras_sigmas only"),
        ({"prediction_type": "flow_prediction"}, "flow_prediction' needs use_flow_sigmas=True"),
        ({"use_dynamic_shifting": True}, "use_dynamic_shifting applies to flow sigmas only"),
        ({"shift_terminal": 0.1}, "shift_terminal applies to flow sigmas only"),
        ({"time_shift_type": "cubic"}, "time_shift_type='cubic' is not supported"),
        ({"predict_x0": False}, "predict_x0=False needs final_sigmas_type='sigma_min'"),
        ({"predict_x0": False, "thresholding": True, "final_sigmas_type": "sigma_min"}, "thresholding needs predict_x0=True"),
        ({"use_karras_sigmas": True, "use_exponential_sigmas": True}, "only one of"),
    ],
)
def test_unsupported_configs_are_errors(config: dict, match: str) -> None:
    with pytest.raises(SchedulerConfigError, match=match):
        ours.UniPCMultistepScheduler.from_config(config)


def test_bad_calls_are_clear_errors() -> None:
    s = ours.UniPCMultistepScheduler()
    with pytest.raises(ValueError, match="custom sigmas need use_flow_sigmas=True"):
        s.set_timesteps(sigmas=[1.0, 0.5])
    flow = ours.UniPCMultistepScheduler(use_flow_sigmas=True, use_dynamic_shifting=True, prediction_type="flow_prediction")
    with pytest.raises(ValueError, match="use_dynamic_shifting=True needs mu"):
        flow.set_timesteps(10)
    with pytest.raises(ValueError, match="num_inference_steps=3 but 2 sigmas"):
        flow.set_timesteps(3, sigmas=np.array([1.0, 0.5]), mu=0.5)
    with pytest.raises(ValueError, match="exactly one of num_inference_steps"):
        s.set_timesteps()


def test_sampler_name_switches_from_dpm_keeping_the_model_schedule() -> None:
    s = ours.scheduler_from_name("UniPC", ours.DPMSolverMultistepScheduler.from_config({**SD, "solver_type": "heun"}).config)
    ref = diffusers.UniPCMultistepScheduler.from_config(diffusers.DPMSolverMultistepScheduler.from_config({**SD, "solver_type": "heun"}).config)
    assert isinstance(s, ours.UniPCMultistepScheduler)
    assert s.config.solver_type == ref.config.solver_type == "bh2"
    for x in (s, ref):
        x.set_timesteps(10)
    assert_schedule_match(s, ref)


@pytest.mark.parametrize("sample_dtype, output_dtype", [(torch.float32, torch.float16), (torch.bfloat16, torch.bfloat16)])
@pytest.mark.parametrize("config", [{"solver_order": 3}, {"predict_x0": False, "final_sigmas_type": "sigma_min"}])
def test_half_precision_is_bit_exact_too(config: dict, sample_dtype: torch.dtype, output_dtype: torch.dtype) -> None:
    a, b = _pair(config)
    xs = []
    for s in (a, b):
        s.set_timesteps(8)
        x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)).to(sample_dtype)
        for t in s.timesteps:
            x = s.step(fake_denoiser(x.float(), t).to(output_dtype), t, x).prev_sample
        xs.append(x)
    assert xs[0].dtype == xs[1].dtype and torch.equal(xs[0], xs[1])
