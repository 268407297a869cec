"""Inputs that would silently do nothing, or give noise, are warned about or refused (issue 14 item 5)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from diffblocks.blocks.errors import InputError
from diffblocks.pipeline import Pipeline
from diffblocks.pipeline_checks import warn_no_ops

SIZE = {"height": 64, "width": 64}
RUN = {"prompt": "a cat", "num_inference_steps": 2, "output_type": "np", "progress": False, "seed": 0}


@pytest.fixture()
def pipe(tiny_sd_dir):
    return Pipeline.from_pretrained(tiny_sd_dir)


def test_strength_without_image_warns(pipe):
    with pytest.warns(UserWarning, match="strength has no effect without an init image"):
        pipe(strength=0.5, **SIZE, **RUN)


def test_no_warning_for_a_plain_run(pipe):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe(**SIZE, **RUN)
        pipe(image=Image.new("RGB", (64, 64)), strength=0.5, **SIZE, **RUN)


def test_init_image_far_larger_than_native_warns(pipe, monkeypatch):
    native = pipe.components["unet"].config.sample_size * 8
    assert pipe._native_size() == native
    # A 3x-native image would run slowly here; shrink the model's native size instead.
    monkeypatch.setattr(pipe, "_native_size", lambda: 16)
    with pytest.warns(UserWarning, match="far larger than the model's native 16x16"):
        pipe(image=Image.new("RGB", (64, 64)), strength=0.5, **RUN)


def test_large_image_rule():
    native = 64
    big, fine = Image.new("RGB", (160, 160)), Image.new("RGB", (128, 128))
    with pytest.warns(UserWarning, match="160x160"):
        warn_no_ops({"image": big}, native)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_no_ops({"image": fine}, native)  # 4x the pixels is still fine
        warn_no_ops({"image": big, "height": 64, "width": 64}, native)  # the size is given


@pytest.mark.parametrize("name", ["Flow Euler", "FlowMatchEuler"])
def test_flow_matching_sampler_on_a_vp_model_is_refused(pipe, name):
    before = pipe.components["scheduler"]
    with pytest.raises(InputError, match="flow-matching sampler, but this model is a VP model"):
        pipe.set_scheduler(name)
    assert pipe.components["scheduler"] is before
    pipe.set_scheduler("Euler a")  # a VP sampler is fine


def test_unknown_sampler_name_is_an_input_error(pipe):
    with pytest.raises(InputError, match="valid names"):
        pipe.set_scheduler("Eulerr")
