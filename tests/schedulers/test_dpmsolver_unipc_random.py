"""Random option combinations for DPM-Solver++ and UniPC against diffusers (hypothesis, derandomized):
identical schedules and trajectories within ATOL (1e-6, fp32) at every step."""

from __future__ import annotations

import diffusers
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from diffblocks import schedulers as ours

from .parity import assert_schedule_match, assert_trajectories_match, trajectory

BETAS = st.sampled_from([
    {},
    {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
    {"beta_schedule": "squaredcos_cap_v2"},
])
COMMON = {
    "prediction_type": st.sampled_from(["epsilon", "v_prediction", "sample"]),
    "timestep_spacing": st.sampled_from(["linspace", "leading", "trailing"]),
    "steps_offset": st.sampled_from([0, 1]),
    "sigmas": st.sampled_from([{}, {"use_karras_sigmas": True}, {"use_exponential_sigmas": True}]),
    "final_sigmas_type": st.sampled_from(["zero", "sigma_min"]),
    "solver_order": st.sampled_from([1, 2, 3]),
    "lower_order_final": st.booleans(),
    "rescale_betas_zero_snr": st.booleans(),
}
SETTINGS = settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


def _check(name: str, config: dict, steps: int, seed: int | None) -> None:
    ref = getattr(diffusers, name).from_config(config)
    ref.set_timesteps(steps)
    # configs whose reference schedule repeats a timestep (Karras on the cosine schedule) or whose
    # reference trajectory is not finite (bh1 landing on σ = 0) are not parity material
    assume(len(set(ref.timesteps.tolist())) == len(ref.timesteps))
    ref_xs = trajectory(ref, steps, seed=seed)
    assume(all(torch.isfinite(x).all() for x in ref_xs))
    mine = getattr(ours, name).from_config(config)
    assert_trajectories_match(trajectory(mine, steps, seed=seed), ref_xs)
    assert_schedule_match(mine, ref)


@SETTINGS
@given(betas=BETAS, steps=st.integers(2, 30), algorithm=st.sampled_from(["dpmsolver++", "sde-dpmsolver++", "dpmsolver", "sde-dpmsolver"]),
       solver_type=st.sampled_from(["midpoint", "heun"]), euler_at_final=st.booleans(), **COMMON)
def test_dpmsolver_random_configs(betas, steps, algorithm, solver_type, euler_at_final, sigmas, **options) -> None:
    if algorithm in ("dpmsolver", "sde-dpmsolver"):  # what the reference (and we) reject for noise prediction
        assume(options["final_sigmas_type"] == "sigma_min" and not (algorithm == "sde-dpmsolver" and options["solver_order"] == 3))
    config = {**betas, **sigmas, **options, "algorithm_type": algorithm, "solver_type": solver_type, "euler_at_final": euler_at_final}
    _check("DPMSolverMultistepScheduler", config, steps, seed=5 if algorithm.startswith("sde") else None)


@SETTINGS
@given(betas=BETAS, steps=st.integers(2, 30), solver_type=st.sampled_from(["bh1", "bh2"]), predict_x0=st.booleans(),
       disable_corrector=st.sampled_from([[], [0], [0, 1, 2]]), **COMMON)
def test_unipc_random_configs(betas, steps, solver_type, predict_x0, disable_corrector, sigmas, **options) -> None:
    assume(predict_x0 or options["final_sigmas_type"] == "sigma_min")  # the other case is our config error
    config = {**betas, **sigmas, **options, "solver_type": solver_type, "predict_x0": predict_x0, "disable_corrector": disable_corrector}
    _check("UniPCMultistepScheduler", config, steps, seed=None)
