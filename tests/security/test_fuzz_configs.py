"""Issue 21, "done means": mutated index files and model/scheduler configs end in our
documented exception types (docs/security.md), quickly, never a raw TypeError/ZeroDivisionError.

Models are built on the ``meta`` device, so a mutation that asks for a big (but allowed)
model costs no memory; the integers drawn are small or absurd, never in between.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffblocks.components import ComponentError, ComponentsManager
from diffblocks.components.index import read_index
from diffblocks.limits import LimitError
from diffblocks.models import AutoencoderKL, FluxTransformer2DModel, UNet2DConditionModel
from diffblocks.models.modeling import ModelConfigError, ModelLoadError
from diffblocks.schedulers import SCHEDULER_CLASSES
from diffblocks.schedulers.base import SchedulerConfigError
from tests.models.tiny import SD15
from tests.models.tiny_flux_vae import FLUX_SCHNELL_LIKE, VAE_FLUX_LIKE

#: What docs/security.md promises a caller has to catch for bad model folders and configs.
DOCUMENTED = (ComponentError, ModelConfigError, ModelLoadError, SchedulerConfigError, LimitError)
FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

ints = st.sampled_from([-(2**63), -1, 0, 1, 2, 3, 4, 8, 16, 32, 2**31, 10**12])
scalars = st.none() | st.booleans() | ints | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


@st.composite
def mutated(draw, base: dict) -> dict:
    config = dict(base)
    keys = sorted(base) + ["_class_name", "extra_key"]
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(keys))
        if draw(st.integers(0, 5)) == 0:
            config.pop(key, None)
        elif isinstance(config.get(key), list) and draw(st.booleans()):
            config[key] = draw(st.lists(ints, min_size=0, max_size=5))
        else:
            config[key] = draw(values)
    return config


MODELS = [(UNet2DConditionModel, SD15), (AutoencoderKL, VAE_FLUX_LIKE), (FluxTransformer2DModel, FLUX_SCHNELL_LIKE)]


def _build_on_meta(cls, config: dict) -> None:
    try:
        with torch.device("meta"):
            cls.from_config(config)
    except DOCUMENTED:
        pass


@FUZZ
@given(st.sampled_from(range(len(MODELS))).flatmap(lambda i: st.tuples(st.just(i), mutated(MODELS[i][1]))))
def test_model_configs_end_in_documented_errors(case):
    i, config = case
    _build_on_meta(MODELS[i][0], config)


def test_the_unmutated_configs_build():
    for cls, config in MODELS:
        with torch.device("meta"):
            cls.from_config(config)


SCHEDULERS = sorted(SCHEDULER_CLASSES)


@FUZZ
@given(st.sampled_from(SCHEDULERS).flatmap(lambda n: st.tuples(st.just(n), mutated(dict(SCHEDULER_CLASSES[n].defaults)))))
def test_scheduler_configs_end_in_documented_errors(case):
    name, config = case
    try:
        scheduler = SCHEDULER_CLASSES[name].from_config(config)
    except DOCUMENTED:
        return
    try:
        scheduler.set_timesteps(4)
    except DOCUMENTED:
        pass


entries = st.one_of(
    st.tuples(st.sampled_from(["diffusers", "transformers", None, 3]), st.sampled_from(["UNet2DConditionModel", "Scheduler", "CLIPTextModel", None, ""])).map(list),
    st.tuples(
        st.sampled_from(["diffusers", None]), st.sampled_from(["AutoencoderKL", None]),
        st.dictionaries(st.sampled_from(["type_hint", "pretrained_model_name_or_path", "repo", "subfolder", "variant", "revision", "x"]),
                        st.sampled_from([None, "vae", "../outside/vae", "/etc", "org/repo", "fp16", "..", 3, ["a", "b"], ["diffusers", "AutoencoderKL"]]),
                        max_size=4),
    ).map(list),
    values,
)
index_docs = st.dictionaries(st.sampled_from(["_class_name", "_diffusers_version", "unet", "vae", "scheduler", "../up", "x"]), entries, max_size=5)


@FUZZ
@given(index_docs, st.sampled_from(["modular_model_index.json", "model_index.json"]), st.booleans())
def test_index_files_end_in_documented_errors(document, name, from_hub):
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "vae").mkdir()
        (Path(folder) / name).write_text(json.dumps(document))
        try:
            if from_hub:
                read_index(folder, source="org/repo")
            else:
                ComponentsManager.from_pretrained(folder)
        except DOCUMENTED:
            pass


@FUZZ
@given(st.sampled_from([b"\xff\xfe{}", b"[" * 100_000, b"{" * 50_000, b"{\"a\": 1e999}", b"", b"null", b"\x00"]))
def test_hostile_index_bytes_end_in_documented_errors(data):
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "model_index.json").write_bytes(data)
        try:
            read_index(folder)
        except DOCUMENTED:
            pass
