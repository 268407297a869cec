"""Per-run state: one scheduler object, many runs, interleaved or repeated, same results."""

from __future__ import annotations

import pytest
import torch

from diffblocks import schedulers as ours

from .parity import fake_denoiser, start_latents, trajectory

NAMES = list(ours.SCHEDULER_CLASSES)
STOCHASTIC = {"DDPMScheduler", "EulerAncestralDiscreteScheduler", "DPMSolverSDEScheduler"}


def _run(scheduler, steps: int, seed: int) -> list[torch.Tensor]:
    return trajectory(scheduler, steps, seed=seed if type(scheduler).__name__ in STOCHASTIC else None)


@pytest.mark.parametrize("name", NAMES)
def test_interleaved_states_match_separate_objects(name: str) -> None:
    cls = ours.SCHEDULER_CLASSES[name]
    shared = cls.from_config({"beta_schedule": "scaled_linear"})
    runs = [dict(steps=8, seed=1), dict(steps=5, seed=2)]
    states = [shared.new_state(r["steps"]) for r in runs]
    xs = [start_latents(s.init_noise_sigma, seed=i) for i, s in enumerate(states)]
    gens = [torch.Generator().manual_seed(r["seed"]) for r in runs]
    results: list[list[torch.Tensor]] = [[], []]
    for step in range(max(len(s.timesteps) for s in states)):
        for k, state in enumerate(states):  # alternate between the two runs, step by step
            if step >= len(state.timesteps):
                continue
            t = state.timesteps[step]
            out = fake_denoiser(shared.scale_model_input(xs[k], t, state=state), t)
            gen = {"generator": gens[k]} if name in STOCHASTIC else {}
            xs[k] = shared.step(out, t, xs[k], state=state, **gen).prev_sample
            results[k].append(xs[k])
    assert shared.state is None  # new_state never touches the object's own run
    for k, r in enumerate(runs):
        alone = cls.from_config({"beta_schedule": "scaled_linear"})
        state = alone.new_state(r["steps"])
        ref = _run_with_state(alone, state, seed=r["seed"] if name in STOCHASTIC else None, x_seed=k)
        assert all(torch.equal(a, b) for a, b in zip(results[k], ref, strict=True))


def _run_with_state(scheduler, state, seed, x_seed) -> list[torch.Tensor]:
    x = start_latents(state.init_noise_sigma, seed=x_seed)
    gen = {"generator": torch.Generator().manual_seed(seed)} if seed is not None else {}
    out = []
    for t in state.timesteps:
        x = scheduler.step(fake_denoiser(scheduler.scale_model_input(x, t, state=state), t), t, x, state=state, **gen).prev_sample
        out.append(x)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_set_timesteps_resets_everything(name: str) -> None:
    scheduler = ours.SCHEDULER_CLASSES[name]()
    first = _run(scheduler, 6, seed=3)
    scheduler.set_timesteps(9)
    scheduler.step(torch.zeros(2, 4, 8, 8), scheduler.timesteps[0], torch.zeros(2, 4, 8, 8), generator=torch.Generator())  # a half-used run
    second = _run(scheduler, 6, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_diffusers_style_properties_read_and_write_the_current_state() -> None:
    scheduler = ours.EulerDiscreteScheduler()
    scheduler.set_timesteps(10)
    assert scheduler.step_index is None and scheduler.begin_index is None and scheduler.num_inference_steps == 10
    scheduler.set_begin_index(4)
    assert scheduler.state.begin_index == 4
    x = torch.zeros(1, 4, 2, 2)
    scheduler.step(x, scheduler.timesteps[4], x)
    assert scheduler.step_index == 5
    assert scheduler.sigmas.shape == (11,) and float(scheduler.init_noise_sigma) == float(scheduler.sigmas.max())


def test_heun_order_and_doubled_timesteps() -> None:
    scheduler = ours.HeunDiscreteScheduler()
    state = scheduler.new_state(5)
    assert scheduler.order == 2 and len(state.timesteps) == 9 and len(state.sigmas) == 10
    assert torch.equal(state.timesteps[1::2], state.timesteps[2::2])


@pytest.mark.parametrize("name", [n for n in NAMES if not n.startswith(("DPM", "UniPC", "FlowMatch"))])
def test_return_dict_false_gives_the_reference_tuple(name: str) -> None:
    import diffusers

    if name == "LMSDiscreteScheduler":
        pytest.importorskip("scipy", reason="diffusers' LMS step integrates with scipy")
    x = torch.randn(1, 4, 4, 4)
    lengths = []
    for scheduler in (ours.SCHEDULER_CLASSES[name](), getattr(diffusers, name)()):
        scheduler.set_timesteps(4)
        t = scheduler.timesteps[0]
        out = scheduler.step(0.1 * scheduler.scale_model_input(x, t), t, x, return_dict=False)
        assert isinstance(out, tuple) and torch.is_tensor(out[0])
        lengths.append(len(out))
    assert lengths[0] == lengths[1]
