"""Every built-in name we advertise is built by our own code: component type hints, scheduler
class names, sampler names and their ComfyUI aliases. A name listed anywhere without an
implementation (or resolving to diffusers' class) fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diffblocks import models, schedulers
from diffblocks.models.modeling import skip_meta_init
from diffblocks.registry.components import (
    TRANSFORMERS_RENAMED,
    builtin_type_hints,
    is_scheduler_hint,
    resolve_component_class,
)
from diffblocks.schedulers.catalog import COMFYUI_ALIASES, SAMPLER_NAMES, SCHEDULER_NAMES

# tiny folders (tests/conftest.py fixtures) that hold a model class, to load real weights too
MODEL_FOLDERS = {
    "UNet2DConditionModel": ("tiny_sd_dir", "unet"),
    "AutoencoderKL": ("tiny_sd_dir", "vae"),
    "FluxTransformer2DModel": ("tiny_flux_dir", "transformer"),
}


def _diffusers_hints() -> list[str]:
    return [name for library, name in builtin_type_hints() if library == "diffusers"]


def test_registry_advertises_exactly_the_catalogs() -> None:
    assert _diffusers_hints() == [*models.COMPONENT_CLASSES, *SCHEDULER_NAMES]
    assert set(schedulers.SCHEDULER_CLASSES) == set(SCHEDULER_NAMES)


@pytest.mark.parametrize("name", _diffusers_hints())
def test_every_builtin_diffusers_hint_builds_with_our_code(name: str, request: pytest.FixtureRequest) -> None:
    cls = resolve_component_class("diffusers", name)
    assert cls.__module__.startswith("diffblocks.") and cls.__name__ == name, cls
    if is_scheduler_hint("diffusers", name):
        scheduler = cls()
        scheduler.set_timesteps(5)
        x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        t = scheduler.timesteps[0]
        out = scheduler.step(0.1 * scheduler.scale_model_input(x, t), t, x, generator=torch.Generator().manual_seed(1))
        assert out.prev_sample.shape == x.shape and torch.isfinite(out.prev_sample).all()
    elif not hasattr(cls, "config_class"):  # a container of models (MultiControlNetModel)
        from diffblocks.models import ControlNetModel

        with skip_meta_init():
            nets = [ControlNetModel(ControlNetModel.config_class()) for _ in range(2)]
            model = cls(nets)
        assert sum(p.numel() for p in model.parameters()) == 2 * sum(p.numel() for p in nets[0].parameters())
        assert callable(cls.from_pretrained)
    else:
        with skip_meta_init():  # the default (full-size) config, built without weights
            model = cls(cls.config_class())
        assert sum(p.numel() for p in model.parameters()) > 0
        if name in MODEL_FOLDERS:
            fixture, subfolder = MODEL_FOLDERS[name]
            folder: Path = request.getfixturevalue(fixture)
            loaded = cls.from_pretrained(folder, subfolder=subfolder)
            assert not any(p.is_meta for p in loaded.parameters())


@pytest.mark.parametrize("library, name", [h for h in builtin_type_hints() if h[0] != "diffusers"])
def test_every_builtin_transformers_hint_resolves(library: str, name: str) -> None:
    import transformers

    expected = getattr(transformers, name, None) or getattr(transformers, TRANSFORMERS_RENAMED.get(name, name))
    assert resolve_component_class(library, name) is expected


@pytest.mark.parametrize("name", [*SAMPLER_NAMES, *COMFYUI_ALIASES])
def test_every_sampler_name_builds_and_steps(name: str) -> None:
    scheduler = schedulers.scheduler_from_name(name, {"beta_schedule": "scaled_linear"} if "Flow" not in name else None)
    assert type(scheduler).__module__.startswith("diffblocks.schedulers.")
    state = scheduler.new_state(5)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    for t in state.timesteps:
        model_in = scheduler.scale_model_input(x, t, state=state)
        x = scheduler.step(0.1 * model_in, t, x, state=state, generator=torch.Generator().manual_seed(1)).prev_sample
    assert torch.isfinite(x).all()
