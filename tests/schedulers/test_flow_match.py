"""FlowMatchEulerDiscreteScheduler against diffusers: identical schedules, trajectories within ATOL (1e-6, fp32) at every step."""

from __future__ import annotations

import diffusers
import numpy as np
import pytest
import torch

from diffblocks import schedulers as ours
from diffblocks.schedulers import SchedulerConfigError, calculate_shift

from .parity import SHAPE, assert_schedule_match, assert_trajectories_match, fake_denoiser, trajectory

# FLUX.1-dev's scheduler/scheduler_config.json
FLUX = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
}
SD3 = {"num_train_timesteps": 1000, "shift": 3.0}


def _reference(config: dict) -> diffusers.FlowMatchEulerDiscreteScheduler:
    ref = diffusers.FlowMatchEulerDiscreteScheduler.from_config(config)
    # flow pipelines start from unit noise and feed x as it is; diffusers' class has neither attribute
    ref.init_noise_sigma = 1.0
    ref.scale_model_input = lambda sample, *args, **kwargs: sample
    return ref


def _flux_call(steps: int, image_seq_len: int):
    """What the Flux pipeline passes: sigmas = linspace(1, 1/n, n) and mu from the image size."""
    sigmas = np.linspace(1.0, 1 / steps, steps)
    return lambda s: s.set_timesteps(sigmas=sigmas, mu=calculate_shift(image_seq_len))


CASES = [
    ({}, lambda s: s.set_timesteps(10)),
    (SD3, lambda s: s.set_timesteps(28)),
    (FLUX, _flux_call(20, 4096)),  # 1024x1024
    (FLUX, _flux_call(8, 1024)),  # 512x512
    ({**FLUX, "time_shift_type": "linear"}, lambda s: s.set_timesteps(12, mu=1.3)),
    ({**SD3, "use_karras_sigmas": True}, lambda s: s.set_timesteps(15)),
    ({"shift": 2.0, "use_exponential_sigmas": True, "shift_terminal": 0.1}, lambda s: s.set_timesteps(15)),
    ({"invert_sigmas": True}, lambda s: s.set_timesteps(8)),
    (SD3, lambda s: s.set_timesteps(timesteps=[900.0, 700.0, 500.0, 300.0, 100.0], sigmas=[0.9, 0.7, 0.5, 0.3, 0.1])),
]


@pytest.mark.parametrize("config, set_timesteps", CASES)
def test_parity(config: dict, set_timesteps) -> None:
    a = ours.FlowMatchEulerDiscreteScheduler.from_config(config)
    b = _reference(config)
    assert_trajectories_match(trajectory(a, 0, set_timesteps=set_timesteps), trajectory(b, 0, set_timesteps=set_timesteps))
    assert_schedule_match(a, b)


def test_stochastic_sampling_parity_with_the_same_generator() -> None:
    a = ours.FlowMatchEulerDiscreteScheduler(shift=3.0, stochastic_sampling=True)
    b = _reference({"shift": 3.0, "stochastic_sampling": True})
    assert_trajectories_match(trajectory(a, 10, seed=4), trajectory(b, 10, seed=4))


def test_calculate_shift_is_flux_line() -> None:
    # diffusers' Flux pipeline: mu = base_shift at base_seq_len, max_shift at max_seq_len, linear in
    # between and beyond (importing that module would pull in transformers: too slow for this test)
    assert calculate_shift(256) == pytest.approx(0.5, abs=1e-12)
    assert calculate_shift(4096) == pytest.approx(1.15, abs=1e-12)
    assert calculate_shift(1024) == pytest.approx(0.5 + 0.65 * 768 / 3840, abs=1e-12)  # 512x512 Flux latents
    assert calculate_shift(8192) == pytest.approx(0.5 + 0.65 * 7936 / 3840, abs=1e-12)
    assert calculate_shift(100, base_seq_len=100, max_seq_len=200, base_shift=1.0, max_shift=2.0) == pytest.approx(1.0)


def test_scale_noise_for_img2img_parity() -> None:
    a = ours.FlowMatchEulerDiscreteScheduler.from_config(FLUX)
    b = diffusers.FlowMatchEulerDiscreteScheduler.from_config(FLUX)
    setter = _flux_call(10, 1024)
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    for s in (a, b):
        setter(s)
    t = a.timesteps[4:5].repeat(SHAPE[0])
    assert torch.equal(a.scale_noise(x0, t, noise), b.scale_noise(x0, t, noise))  # looked up by timestep
    assert torch.equal(a.add_noise(x0, noise, t), b.scale_noise(x0, t, noise))
    for s in (a, b):  # the pipelines' img2img path: begin index from the strength
        s.set_begin_index(4)
    xa, xb = a.scale_noise(x0, t, noise), b.scale_noise(x0, t, noise)
    assert torch.equal(xa, xb)
    for t in a.timesteps[4:]:
        xa = a.step(fake_denoiser(xa, t), t, xa).prev_sample
        xb = b.step(fake_denoiser(xb, t), t, xb).prev_sample
        assert (xa - xb).abs().max() <= 1e-6


def test_set_shift_changes_later_runs_like_diffusers() -> None:
    a, b = ours.FlowMatchEulerDiscreteScheduler(), _reference({})
    for s in (a, b):
        s.set_shift(3.0)
        s.set_timesteps(6)
    assert a.shift == b.shift == 3.0
    assert_schedule_match(a, b)


def test_two_runs_on_one_object_use_their_own_states() -> None:
    shared = ours.FlowMatchEulerDiscreteScheduler.from_config(FLUX)
    states = [shared.new_state(sigmas=np.linspace(1.0, 1 / n, n), mu=calculate_shift(seq)) for n, seq in ((6, 4096), (4, 256))]
    xs = [torch.randn(SHAPE, generator=torch.Generator().manual_seed(k)) for k in range(2)]
    for i in range(6):
        for k, st in enumerate(states):
            if i < len(st.timesteps):
                t = st.timesteps[i]
                xs[k] = shared.step(fake_denoiser(xs[k], t), t, xs[k], state=st).prev_sample
    for k, (n, seq) in enumerate(((6, 4096), (4, 256))):
        alone = diffusers.FlowMatchEulerDiscreteScheduler.from_config(FLUX)
        alone.set_timesteps(sigmas=np.linspace(1.0, 1 / n, n), mu=calculate_shift(seq))
        x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(k))
        for t in alone.timesteps:
            x = alone.step(fake_denoiser(x, t), t, x).prev_sample
        assert torch.equal(xs[k], x)


def test_bad_input_is_a_clear_error() -> None:
    s = ours.FlowMatchEulerDiscreteScheduler.from_config(FLUX)
    with pytest.raises(ValueError, match="use_dynamic_shifting=True needs mu"):
        s.set_timesteps(10)
    with pytest.raises(ValueError, match="differ in length"):
        s.set_timesteps(sigmas=[1.0, 0.5], timesteps=[1000.0], mu=0.5)
    with pytest.raises(ValueError, match="num_inference_steps=3 but 2 sigmas"):
        s.set_timesteps(3, sigmas=[1.0, 0.5], mu=0.5)
    s.set_timesteps(sigmas=[1.0, 0.5], mu=0.5)
    x = torch.zeros(SHAPE)
    with pytest.raises(ValueError, match="integer timestep"):
        s.step(x, 0, x)
    with pytest.raises(ValueError, match="not one of this run's timesteps"):
        s.step(x, torch.tensor(123.0), x)
    for t in s.timesteps:
        x = s.step(x, t, x).prev_sample
    with pytest.raises(ValueError, match="all 2 steps of this run are done"):
        s.step(x, s.timesteps[-1], x)
    with pytest.raises(SchedulerConfigError, match="time_shift_type='cubic' is not supported"):
        ours.FlowMatchEulerDiscreteScheduler(time_shift_type="cubic")
    with pytest.raises(SchedulerConfigError, match="per_token_timesteps"):
        fresh = ours.FlowMatchEulerDiscreteScheduler()
        fresh.step(x, torch.tensor(1000.0), x, per_token_timesteps=torch.ones(1), state=fresh.new_state(2))


def test_flow_euler_name_keeps_the_flux_config() -> None:
    s = ours.scheduler_from_name("Flow Euler", FLUX)
    assert isinstance(s, ours.FlowMatchEulerDiscreteScheduler) and s.config.use_dynamic_shifting is True
    assert s.config.shift == 3.0 and s.config.max_shift == 1.15


@pytest.mark.parametrize("config", [SD3, {"stochastic_sampling": True}])
def test_bf16_is_bit_exact_too(config: dict) -> None:
    xs = []
    for s in (ours.FlowMatchEulerDiscreteScheduler.from_config(config), _reference(config)):
        s.set_timesteps(8)
        x, gen = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16), torch.Generator().manual_seed(1)
        for t in s.timesteps:
            x = s.step(fake_denoiser(x.float(), t).to(torch.bfloat16), t, x, generator=gen).prev_sample
        xs.append(x)
    assert xs[0].dtype == torch.bfloat16 and torch.equal(xs[0], xs[1])


@pytest.mark.parametrize("name", ["DPMSolverMultistepScheduler", "UniPCMultistepScheduler"])
def test_flux_config_switched_to_a_multistep_solver_on_flow_sigmas(name: str) -> None:
    """How to run DPM++ / UniPC on Flux: the flow config plus use_flow_sigmas and flow_prediction."""
    overrides = {"use_flow_sigmas": True, "prediction_type": "flow_prediction", "flow_shift": FLUX["shift"]}
    a = getattr(ours, name).from_config(ours.FlowMatchEulerDiscreteScheduler.from_config(FLUX).config, **overrides)
    b = getattr(diffusers, name).from_config(diffusers.FlowMatchEulerDiscreteScheduler.from_config(FLUX).config, **overrides)
    setter = lambda s: s.set_timesteps(12, mu=calculate_shift(4096))  # noqa: E731
    assert_trajectories_match(trajectory(a, 0, set_timesteps=setter), trajectory(b, 0, set_timesteps=setter))
    assert_schedule_match(a, b)
    with pytest.raises(SchedulerConfigError, match="use_dynamic_shifting applies to flow sigmas only"):
        getattr(ours, name).from_config(FLUX)  # without the flow settings: an error, not a VP run on a flow model
