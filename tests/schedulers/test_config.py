"""Config handling: diffusers-format load/save, cross-class switching, sampler names, clear errors."""

from __future__ import annotations

import itertools
import json
import pickle

import diffusers
import pytest
import torch

from diffblocks import schedulers as ours
from diffblocks.schedulers import SchedulerConfigError, SchedulerNotReadyError, scheduler_from_name

NAMES = list(ours.SCHEDULER_CLASSES)
SD_PNDM = {  # Stable Diffusion 1.5's scheduler/scheduler_config.json
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}


def _known(config, cls) -> dict:
    return {k: v for k, v in dict(config).items() if k in cls.defaults}


@pytest.mark.parametrize("name", NAMES)
def test_defaults_match_diffusers(name: str) -> None:
    ref = getattr(diffusers, name)()
    assert set(ours.SCHEDULER_CLASSES[name].defaults) == {k for k in ref.config if not k.startswith("_")}
    assert _known(ours.SCHEDULER_CLASSES[name]().config, ours.SCHEDULER_CLASSES[name]) == {k: v for k, v in ref.config.items() if not k.startswith("_")}


@pytest.mark.parametrize("src, dst", list(itertools.permutations(NAMES, 2)))
def test_cross_class_switch_matches_diffusers(src: str, dst: str) -> None:
    ours_src = ours.SCHEDULER_CLASSES[src].from_config(SD_PNDM)
    ref_src = getattr(diffusers, src).from_config(SD_PNDM)
    mine = ours.SCHEDULER_CLASSES[dst].from_config(ours_src.config)
    ref = getattr(diffusers, dst).from_config(ref_src.config)
    assert _known(mine.config, ours.SCHEDULER_CLASSES[dst]) == _known(ref.config, ours.SCHEDULER_CLASSES[dst])
    assert set(mine.config["_use_default_values"]) == set(ref.config["_use_default_values"])


def test_save_load_round_trip_with_diffusers(tmp_path) -> None:
    ours.EulerDiscreteScheduler.from_config(SD_PNDM, use_karras_sigmas=True).save_pretrained(tmp_path / "scheduler")
    data = json.loads((tmp_path / "scheduler" / "scheduler_config.json").read_text())
    assert data["_class_name"] == "EulerDiscreteScheduler" and "_use_default_values" not in data
    ref = diffusers.EulerDiscreteScheduler.from_pretrained(tmp_path, subfolder="scheduler")
    assert ref.config.use_karras_sigmas is True and ref.config.steps_offset == 1
    # and back: a folder diffusers wrote, read by path, folder, or model folder + subfolder
    ref.save_pretrained(tmp_path / "model" / "scheduler")
    for loaded in (
        ours.EulerDiscreteScheduler.from_pretrained(tmp_path / "model"),
        ours.EulerDiscreteScheduler.from_pretrained(tmp_path / "model" / "scheduler", subfolder=None),
        ours.EulerDiscreteScheduler.from_config(tmp_path / "model" / "scheduler" / "scheduler_config.json"),
        ours.EulerDiscreteScheduler.from_config(str(tmp_path / "model")),
    ):
        assert _known(loaded.config, ours.EulerDiscreteScheduler) == _known(ref.config, ours.EulerDiscreteScheduler)


def test_from_pretrained_missing_file_names_the_path(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="scheduler_config.json"):
        ours.DDIMScheduler.from_pretrained(tmp_path)


def test_config_interop_both_ways() -> None:
    mine = ours.DDIMScheduler.from_config(diffusers.PNDMScheduler.from_config(SD_PNDM).config)  # a FrozenDict
    ref = diffusers.DDIMScheduler.from_config(mine.config)  # our config is a dict too
    assert _known(mine.config, ours.DDIMScheduler) == _known(ref.config, ours.DDIMScheduler)
    assert mine.config.steps_offset == 1 and mine.config["beta_schedule"] == "scaled_linear"
    assert mine.config.skip_prk_steps is True  # carried over for switching back, like diffusers
    assert ours.PNDMScheduler.from_config(mine.config).config.skip_prk_steps is True
    assert ours.EulerDiscreteScheduler in mine.compatibles
    # Exactly the concrete samplers (classes register on the base; shared bases are not offered).
    assert mine.compatibles == list(ours.SCHEDULER_CLASSES.values())


def test_config_is_read_only_and_picklable() -> None:
    config = ours.HeunDiscreteScheduler().config
    with pytest.raises(TypeError, match="read-only"):
        config["beta_start"] = 0.1
    with pytest.raises(TypeError):
        config.beta_start = 0.1
    assert pickle.loads(pickle.dumps(config)) == config
    assert json.loads(json.dumps(ours.DDPMScheduler(trained_betas=torch.linspace(0.1, 0.2, 1000)).config.to_dict()))


@pytest.mark.parametrize(
    "name, key, value",
    [
        ("DDIMScheduler", "beta_schedule", "laplace"),
        ("EulerDiscreteScheduler", "prediction_type", "flow"),
        ("EulerDiscreteScheduler", "timestep_spacing", "uniform"),
        ("EulerDiscreteScheduler", "final_sigmas_type", "denoise_to_zero"),
        ("EulerDiscreteScheduler", "interpolation_type", "cubic"),
        ("PNDMScheduler", "prediction_type", "sample"),
        ("DDPMScheduler", "variance_type", "fixed_large_log"),
        ("HeunDiscreteScheduler", "beta_schedule", "sigmoid"),
    ],
)
def test_unsupported_value_is_an_error_naming_the_key(name: str, key: str, value: object) -> None:
    cls = ours.SCHEDULER_CLASSES[name]
    with pytest.raises(SchedulerConfigError, match=f"{name}: {key}={value!r} is not supported"):
        cls.from_config({key: value})
    with pytest.raises(SchedulerConfigError, match=key):
        cls(**{key: value})


def test_unknown_keys() -> None:
    with pytest.raises(SchedulerConfigError, match="unknown config key"):
        ours.EulerDiscreteScheduler(solver_order=2)  # typed by the user: an error
    with pytest.raises(SchedulerConfigError, match="unknown config key"):
        ours.EulerDiscreteScheduler.from_config({}, eta=1.0)
    # in a config from another scheduler: ignored, as diffusers ignores it
    assert ours.EulerDiscreteScheduler.from_config({"solver_order": 2}).config.solver_order == 2


def test_two_sigma_schedules_are_an_error() -> None:
    with pytest.raises(ValueError, match="only one of"):
        ours.EulerDiscreteScheduler(use_karras_sigmas=True, use_exponential_sigmas=True)


@pytest.mark.parametrize("name", NAMES)
def test_too_many_steps_is_an_error(name: str) -> None:
    scheduler = ours.SCHEDULER_CLASSES[name](num_train_timesteps=50)
    with pytest.raises(ValueError, match="num_inference_steps=51 is larger than num_train_timesteps=50"):
        scheduler.set_timesteps(51)
    with pytest.raises(ValueError, match="positive integer"):
        scheduler.set_timesteps(0)


@pytest.mark.parametrize("name", NAMES)
def test_step_before_set_timesteps_is_an_error(name: str) -> None:
    scheduler = ours.SCHEDULER_CLASSES[name]()
    x = torch.zeros(1, 4, 8, 8)
    with pytest.raises(SchedulerNotReadyError, match=r"call set_timesteps\(\.\.\.\) before step\(\)"):
        scheduler.step(x, 999, x)
    with pytest.raises(SchedulerNotReadyError, match="set_timesteps"):
        scheduler.timesteps  # noqa: B018


def test_timestep_not_in_schedule_is_an_error() -> None:
    scheduler = ours.EulerDiscreteScheduler()
    scheduler.set_timesteps(10)
    with pytest.raises(ValueError, match="not one of this run's timesteps"):
        scheduler.scale_model_input(torch.zeros(1), torch.tensor(3.5))


def test_sampler_names() -> None:
    euler_a = scheduler_from_name("  euler A ", SD_PNDM)
    assert isinstance(euler_a, ours.EulerAncestralDiscreteScheduler) and euler_a.config.steps_offset == 1
    lms = scheduler_from_name("LMS Karras", ours.EulerDiscreteScheduler.from_config(SD_PNDM).config)
    assert isinstance(lms, ours.LMSDiscreteScheduler) and lms.config.use_karras_sigmas is True
    assert scheduler_from_name("euler_ancestral").__class__ is ours.EulerAncestralDiscreteScheduler  # ComfyUI name
    assert scheduler_from_name("PLMS", SD_PNDM).config.skip_prk_steps is True
    with pytest.raises(ValueError, match="unknown sampler name 'Euler b'.*Euler a"):
        scheduler_from_name("Euler b")
    with pytest.raises(SchedulerConfigError, match="prediction_type='flow'"):
        scheduler_from_name("Euler", {"prediction_type": "flow"})


def test_from_pretrained_repo_id_goes_through_the_pinned_hub_download(tmp_path, monkeypatch) -> None:
    import sys
    import types

    ours.DDIMScheduler(steps_offset=1).save_pretrained(tmp_path / "scheduler")
    calls = []

    def fake_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return tmp_path

    monkeypatch.setitem(sys.modules, "diffblocks.hub", types.SimpleNamespace(snapshot_download_pinned=fake_download))
    loaded = ours.DDIMScheduler.from_pretrained("org/model", revision="abc")
    assert loaded.config.steps_offset == 1
    assert calls[0][0] == "org/model" and calls[0][1]["revision"] == "abc"
    assert calls[0][1]["allow_patterns"] == ["scheduler/scheduler_config.json"]


@pytest.mark.parametrize(
    "name, unsupported",
    [
        ("DDPMScheduler", "sigmas"),
        ("DDIMScheduler", "timesteps"),
        ("PNDMScheduler", "sigmas"),
        ("LMSDiscreteScheduler", "timesteps"),
        ("EulerDiscreteScheduler", "mu"),
        ("EulerAncestralDiscreteScheduler", "sigmas"),
        ("HeunDiscreteScheduler", "mu"),
    ],
)
def test_new_state_takes_custom_schedules_uniformly(name: str, unsupported: str) -> None:
    scheduler = ours.SCHEDULER_CLASSES[name]()
    state = scheduler.new_state(5, timesteps=None, sigmas=None, mu=None)  # None everywhere is always fine
    assert state.num_inference_steps == 5
    with pytest.raises(ValueError, match=f"does not support custom {unsupported}"):
        scheduler.new_state(5, **{unsupported: [1.0, 0.5]})
