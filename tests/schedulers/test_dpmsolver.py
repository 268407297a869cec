"""DPMSolverMultistepScheduler against diffusers: identical schedules, trajectories within ATOL (1e-6, fp32) at every step."""

from __future__ import annotations

import diffusers
import pytest
import torch

from diffblocks import schedulers as ours
from diffblocks.schedulers import SchedulerConfigError, calculate_shift

from .parity import SHAPE, assert_schedule_match, assert_trajectories_match, fake_denoiser, trajectory

SD = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "steps_offset": 1}

CONFIGS = [
    {},
    {**SD, "use_karras_sigmas": True},  # "DPM++ 2M Karras"
    {**SD, "timestep_spacing": "leading"},
    {**SD, "timestep_spacing": "trailing", "final_sigmas_type": "sigma_min"},
    {"solver_order": 1, "prediction_type": "v_prediction", "timestep_spacing": "trailing"},
    {"solver_order": 3, "solver_type": "heun", "lower_order_final": False, "final_sigmas_type": "sigma_min"},
    {"solver_type": "heun", "euler_at_final": True, "use_exponential_sigmas": True},
    {"prediction_type": "sample", "thresholding": True, "sample_max_value": 1.5},
    {"beta_schedule": "squaredcos_cap_v2", "lambda_min_clipped": -5.1, "timestep_spacing": "leading"},
    {"rescale_betas_zero_snr": True, "prediction_type": "v_prediction", "timestep_spacing": "trailing"},
    {**SD, "use_lu_lambdas": True, "solver_order": 3},
    # DEIS configs' algorithm_type reads as dpmsolver++
    {"trained_betas": torch.linspace(1e-4, 2e-2, 1000).tolist(), "algorithm_type": "deis", "final_sigmas_type": "sigma_min"},
    # the noise-prediction DPM-Solver (deprecated in diffusers, still in old configs)
    {**SD, "algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min", "use_karras_sigmas": True},
    {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min", "solver_order": 3, "solver_type": "heun",
     "prediction_type": "v_prediction", "thresholding": True, "lower_order_final": False},
]
SDE_CONFIGS = [
    {"algorithm_type": "sde-dpmsolver++"},
    {**SD, "algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},  # "DPM++ 2M SDE Karras"
    {"algorithm_type": "sde-dpmsolver++", "solver_type": "heun", "solver_order": 3, "final_sigmas_type": "sigma_min"},
    {"algorithm_type": "sde-dpmsolver++", "solver_order": 1, "prediction_type": "v_prediction"},
    {"algorithm_type": "sde-dpmsolver", "final_sigmas_type": "sigma_min"},
    {**SD, "algorithm_type": "sde-dpmsolver", "final_sigmas_type": "sigma_min", "solver_type": "heun", "prediction_type": "sample"},
]


def _pair(config: dict) -> tuple:
    return ours.DPMSolverMultistepScheduler.from_config(config), diffusers.DPMSolverMultistepScheduler.from_config(config)


@pytest.mark.parametrize("steps", [8, 20])
@pytest.mark.parametrize("config", CONFIGS)
def test_ode_parity(config: dict, steps: int) -> None:
    a, b = _pair(config)
    assert_trajectories_match(trajectory(a, steps), trajectory(b, steps))
    assert_schedule_match(a, b)


@pytest.mark.parametrize("config", SDE_CONFIGS)
def test_sde_parity_with_the_same_generator(config: dict) -> None:
    a, b = _pair(config)
    assert_trajectories_match(trajectory(a, 12, seed=7), trajectory(b, 12, seed=7))


def test_sde_variance_noise_and_generator_lists() -> None:
    a, b = _pair({"algorithm_type": "sde-dpmsolver++"})
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    assert_trajectories_match(trajectory(a, 6, variance_noise=noise), trajectory(b, 6, variance_noise=noise))
    gens = lambda: [torch.Generator().manual_seed(i) for i in range(SHAPE[0])]  # noqa: E731
    for s in (a, b):
        s.set_timesteps(4)
    x = torch.ones(SHAPE)
    t = a.timesteps[0]
    assert torch.equal(a.step(x, t, x, generator=gens()).prev_sample, b.step(x, t, x, generator=gens()).prev_sample)


@pytest.mark.parametrize("steps", [8, 25])
def test_cosine_karras_schedule_keeps_fractional_timesteps_like_diffusers(steps: int) -> None:
    a, b = _pair({"beta_schedule": "squaredcos_cap_v2", "use_karras_sigmas": True})
    for s in (a, b):
        s.set_timesteps(steps)
    assert_schedule_match(a, b)


def test_custom_timesteps_parity() -> None:
    a, b = _pair(SD)
    ts = [999, 850, 700, 500, 301, 120, 20]
    set_ts = lambda s: s.set_timesteps(timesteps=ts)  # noqa: E731
    assert_trajectories_match(trajectory(a, 0, set_timesteps=set_ts), trajectory(b, 0, set_timesteps=set_ts))
    assert_schedule_match(a, b)


def test_learned_variance_output_is_sliced_like_diffusers() -> None:
    a, b = _pair({"variance_type": "learned_range"})
    for s in (a, b):
        s.set_timesteps(5)
    x = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    xa, xb = x, x
    for t in a.timesteps:
        out = torch.cat([fake_denoiser(xa, t), 0.3 * xa], dim=1)  # 6 channels: eps + variance
        xa = a.step(out, t, xa).prev_sample
        xb = b.step(out.clone(), t, xb).prev_sample
        assert (xa - xb).abs().max() <= 1e-6


def test_add_noise_and_img2img_start_parity() -> None:
    a, b = _pair({**SD, "use_karras_sigmas": True})
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    for s in (a, b):
        s.set_timesteps(10)
    t = a.timesteps[3:5]
    assert torch.equal(a.add_noise(x0, noise, t), b.add_noise(x0, noise, t))
    # img2img: start at step 4 of 10 through set_begin_index
    for s in (a, b):
        s.set_begin_index(4)
    t = a.timesteps[4:5].repeat(SHAPE[0])
    xa, xb = a.add_noise(x0, noise, t), b.add_noise(x0, noise, t)
    assert torch.equal(xa, xb)
    for t in a.timesteps[4:]:
        xa = a.step(fake_denoiser(xa, t), t, xa).prev_sample
        xb = b.step(fake_denoiser(xb, t), t, xb).prev_sample
        assert (xa - xb).abs().max() <= 1e-6


def test_history_lives_in_the_state() -> None:
    """Two third-order SDE runs interleaved on one object == two separate objects."""
    cfg = {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}
    shared = ours.DPMSolverMultistepScheduler(**cfg)
    states = [shared.new_state(9), shared.new_state(6)]
    gens = [torch.Generator().manual_seed(k) for k in range(2)]
    xs = [torch.randn(SHAPE, generator=torch.Generator().manual_seed(10 + k)) for k in range(2)]
    for i in range(9):
        for k, st in enumerate(states):
            if i < len(st.timesteps):
                t = st.timesteps[i]
                xs[k] = shared.step(fake_denoiser(xs[k], t), t, xs[k], generator=gens[k], state=st).prev_sample
    for k, steps in enumerate((9, 6)):
        alone = diffusers.DPMSolverMultistepScheduler(**cfg)
        alone.set_timesteps(steps)
        gen, x = torch.Generator().manual_seed(k), torch.randn(SHAPE, generator=torch.Generator().manual_seed(10 + k))
        for t in alone.timesteps:
            x = alone.step(fake_denoiser(x, t), t, x, generator=gen).prev_sample
        assert torch.equal(xs[k], x)


@pytest.mark.parametrize(
    "key, value",
    [
        ("algorithm_type", "dpmsolver3"),
        ("solver_type", "rk4"),
        ("solver_order", 4),
        ("time_shift_type", "linear"),
        ("final_sigmas_type", "denoise_to_zero"),
        ("timestep_spacing", "uniform"),
    ],
)
def test_unsupported_values_name_the_key(key: str, value: object) -> None:
    with pytest.raises(SchedulerConfigError, match=f"{key}={value!r} is not supported"):
        ours.DPMSolverMultistepScheduler.from_config({key: value})


def test_bad_calls_are_clear_errors() -> None:
    s = ours.DPMSolverMultistepScheduler()
    s.set_timesteps(2)
    x = torch.zeros(SHAPE)
    for t in s.timesteps:
        x = s.step(x, t, x).prev_sample
    with pytest.raises(ValueError, match="all 2 steps of this run are done"):
        s.step(x, s.timesteps[-1], x)
    with pytest.raises(ValueError, match="exactly one of num_inference_steps or timesteps"):
        s.set_timesteps()
    with pytest.raises(ValueError, match="exactly one of"):
        s.set_timesteps(10, timesteps=[999, 500])
    with pytest.raises(ValueError, match="cannot be combined with use_karras_sigmas"):
        ours.DPMSolverMultistepScheduler(use_karras_sigmas=True).set_timesteps(timesteps=[999, 500])
    with pytest.raises(ValueError, match="mu needs use_dynamic_shifting=True"):
        s.set_timesteps(10, mu=0.5)
    with pytest.raises(ValueError, match="only one of"):
        ours.DPMSolverMultistepScheduler(use_karras_sigmas=True, use_lu_lambdas=True)


FLOW = {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}
FLOW_CASES = [
    ({**FLOW, "flow_shift": 3.0}, lambda s: s.set_timesteps(12)),  # SD3-like
    ({**FLOW, "use_dynamic_shifting": True}, lambda s: s.set_timesteps(10, mu=calculate_shift(4096))),  # Flux, 1024²
    ({**FLOW, "use_dynamic_shifting": True, "algorithm_type": "sde-dpmsolver++", "solver_order": 3}, lambda s: s.set_timesteps(10, mu=0.7)),
    ({**FLOW, "flow_shift": 2.0, "final_sigmas_type": "sigma_min", "solver_type": "heun"}, lambda s: s.set_timesteps(8)),
    ({"use_flow_sigmas": True, "prediction_type": "v_prediction", "flow_shift": 3.0}, lambda s: s.set_timesteps(8)),
]


@pytest.mark.parametrize("config, set_timesteps", FLOW_CASES)
def test_flow_sigmas_parity(config: dict, set_timesteps) -> None:
    a, b = _pair(config)
    assert_trajectories_match(trajectory(a, 0, seed=3, set_timesteps=set_timesteps), trajectory(b, 0, seed=3, set_timesteps=set_timesteps))
    assert_schedule_match(a, b)
    x0, noise = torch.ones(SHAPE), torch.full(SHAPE, 0.5)
    t = a.timesteps[2:3]
    assert torch.equal(a.add_noise(x0, noise, t), b.add_noise(x0, noise, t))


@pytest.mark.parametrize(
    "config, match",
    [
        ({**FLOW, "use_karras_sigmas": True}, "use_flow_sigmas cannot be combined with use_karras_sigmas"),
        ({"prediction_type": "flow_prediction"}, "flow_prediction' needs use_flow_sigmas=True"),
        ({"use_dynamic_shifting": True}, "use_dynamic_shifting applies to flow sigmas only"),
        ({"algorithm_type": "dpmsolver"}, "algorithm_type='dpmsolver' needs final_sigmas_type='sigma_min'"),
        ({"algorithm_type": "sde-dpmsolver", "final_sigmas_type": "sigma_min", "solver_order": 3}, "orders 1 and 2 only"),
    ],
)
def test_config_errors(config: dict, match: str) -> None:
    with pytest.raises(SchedulerConfigError, match=match):
        ours.DPMSolverMultistepScheduler.from_config(config)


def test_flow_call_errors() -> None:
    s = ours.DPMSolverMultistepScheduler(**FLOW, use_dynamic_shifting=True)
    with pytest.raises(ValueError, match="use_dynamic_shifting=True needs mu"):
        s.set_timesteps(10)
    with pytest.raises(ValueError, match="custom timesteps cannot be combined with use_flow_sigmas"):
        s.set_timesteps(timesteps=[900, 500], mu=0.5)


def test_switching_from_unipc_maps_its_solver_type_like_diffusers() -> None:
    unipc = ours.UniPCMultistepScheduler(solver_type="bh1", solver_order=3)
    mine = ours.DPMSolverMultistepScheduler.from_config(unipc.config)
    ref = diffusers.DPMSolverMultistepScheduler.from_config(diffusers.UniPCMultistepScheduler(solver_type="bh1", solver_order=3).config)
    assert mine.config.solver_type == ref.config.solver_type == "midpoint"
    assert mine.config.solver_order == ref.config.solver_order == 3


@pytest.mark.parametrize(
    "name, expected",
    [
        ("DPM++ 2M", {"algorithm_type": "dpmsolver++", "solver_type": "midpoint", "use_karras_sigmas": False}),
        ("dpm++ 2m karras", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
        ("DPM++ 2M SDE Karras", {"algorithm_type": "sde-dpmsolver++", "solver_type": "midpoint", "use_karras_sigmas": True}),
        ("DPM++ 2M SDE Heun", {"algorithm_type": "sde-dpmsolver++", "solver_type": "heun", "use_karras_sigmas": False}),
        ("dpmpp_2m_sde_gpu", {"algorithm_type": "sde-dpmsolver++"}),
    ],
)
def test_sampler_names_build_dpm_on_the_model_config(name: str, expected: dict) -> None:
    base = ours.UniPCMultistepScheduler.from_config({**SD, "solver_type": "bh1"})  # any model's scheduler
    s = ours.scheduler_from_name(name, base.config)
    assert isinstance(s, ours.DPMSolverMultistepScheduler)
    assert {k: s.config[k] for k in expected} == expected
    assert s.config.beta_schedule == "scaled_linear" and s.config.steps_offset == 1


@pytest.mark.parametrize(
    "sample_dtype, output_dtype", [(torch.float32, torch.float16), (torch.bfloat16, torch.bfloat16), (torch.float16, torch.float16)]
)
@pytest.mark.parametrize("config", [{}, {"algorithm_type": "sde-dpmsolver++", "solver_order": 3, "prediction_type": "v_prediction"}])
def test_half_precision_is_bit_exact_too(config: dict, sample_dtype: torch.dtype, output_dtype: torch.dtype) -> None:
    # torch rounds a 0-dim fp32 scalar to a half tensor's dtype when it is the left operand; we follow
    a, b = _pair(config)
    xs = []
    for s in (a, b):
        s.set_timesteps(8)
        x, gen = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)).to(sample_dtype), torch.Generator().manual_seed(1)
        for t in s.timesteps:
            x = s.step(fake_denoiser(x.float(), t).to(output_dtype), t, x, generator=gen).prev_sample
        xs.append(x)
    assert xs[0].dtype == xs[1].dtype and torch.equal(xs[0], xs[1])
