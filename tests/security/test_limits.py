"""Issue 21, item 6: a config or request cannot ask for an absurd allocation; each refusal names
the key and the limit and says how to raise it."""

from __future__ import annotations

import time

import pytest

from diffblocks.components.loading import load_spec
from diffblocks import limits
from diffblocks.components import ComponentError
from diffblocks.limits import LimitError
from diffblocks.models.autoencoder_kl import AutoencoderKLConfig
from diffblocks.models.flux import FluxTransformer2DConfig
from diffblocks.models.unet_2d_condition import UNet2DConditionConfig, UNet2DConditionModel
from diffblocks.schedulers import EulerDiscreteScheduler
from diffblocks.schedulers.base import SchedulerConfigError
from tests.security.tiny import save_tiny_clip


def test_scheduler_num_train_timesteps_is_bounded_before_its_tables_are_built():
    start = time.perf_counter()
    with pytest.raises(SchedulerConfigError, match=r"num_train_timesteps = 10000000000 is above the limit of 100000") as info:
        EulerDiscreteScheduler.from_config({"num_train_timesteps": 10**10})
    assert time.perf_counter() - start < 1.0  # refused, not allocated (it was 40 GB)
    assert "DIFFBLOCKS_LIMITS='num_train_timesteps=N'" in str(info.value)
    with limits.raised(num_train_timesteps=200_000):
        assert EulerDiscreteScheduler.from_config({"num_train_timesteps": 150_000}).num_train_timesteps == 150_000
    with pytest.raises(SchedulerConfigError):  # the old limit is back after the block
        EulerDiscreteScheduler.from_config({"num_train_timesteps": 150_000})


def test_the_environment_variable_raises_a_limit(monkeypatch):
    monkeypatch.setenv(limits.ENV_VAR, "num_train_timesteps=300000, image_side=20000")
    assert EulerDiscreteScheduler.from_config({"num_train_timesteps": 250_000}).num_train_timesteps == 250_000
    monkeypatch.setenv(limits.ENV_VAR, "no_such_limit=3")
    with pytest.raises(LimitError, match="NAME=INTEGER"):
        limits.current()


@pytest.mark.parametrize(
    ("config_cls", "key", "value", "limit"),
    [
        (UNet2DConditionConfig, "layers_per_block", 2000, "model_layers"),
        (UNet2DConditionConfig, "block_out_channels", [32, 10**7], "model_channels"),
        (UNet2DConditionConfig, "attention_head_dim", 100_000, "model_heads"),
        (AutoencoderKLConfig, "layers_per_block", 5000, "model_layers"),
        (AutoencoderKLConfig, "latent_channels", 10**6, "model_channels"),
        (FluxTransformer2DConfig, "num_single_layers", 100_000, "model_layers"),
        (FluxTransformer2DConfig, "joint_attention_dim", 10**8, "model_channels"),
    ],
)
def test_model_config_sizes_are_bounded(config_cls, key, value, limit):
    base = {"block_out_channels": [32, 64], "down_block_types": ["DownBlock2D"] * 2, "up_block_types": ["UpBlock2D"] * 2,
            "norm_num_groups": 8} if config_cls is UNet2DConditionConfig else {}
    start = time.perf_counter()
    with pytest.raises(LimitError, match=rf"{key} = \d+ is above the limit of \d+ \({limit}\)"):
        config_cls.from_dict({**base, key: value})
    assert time.perf_counter() - start < 1.0


def test_too_many_blocks_are_bounded():
    with pytest.raises(LimitError, match=r"len\(block_out_channels\) = 1000 .*model_blocks"):
        AutoencoderKLConfig.from_dict({"block_out_channels": [8] * 1000, "down_block_types": ["DownEncoderBlock2D"] * 1000,
                                       "up_block_types": ["UpDecoderBlock2D"] * 1000, "norm_num_groups": 8})


def test_building_a_model_from_a_huge_config_fails_fast():
    start = time.perf_counter()
    with pytest.raises(LimitError, match="layers_per_block"):
        UNet2DConditionModel.from_config({"layers_per_block": 2000})
    assert time.perf_counter() - start < 1.0  # it was 46 s and 1.2 GB


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_hidden_layers": 100_000}, r"num_hidden_layers = 100000 is above the limit of 512 \(model_layers\)"),
        ({"vocab_size": 10**9}, r"vocab_size = 1000000000 is above the limit"),
        ({"hidden_size": -4}, r"hidden_size = -4 must be an integer of at least 1"),
        ({"num_attention_heads": "many"}, r"num_attention_heads = 'many' must be an integer"),
    ],
)
def test_transformers_text_encoder_configs_are_bounded_before_building(tmp_path, changes, message):
    spec = save_tiny_clip(tmp_path / "text_encoder", **changes)
    start = time.perf_counter()
    with pytest.raises(ComponentError, match=message) as info:
        load_spec(spec)
    assert time.perf_counter() - start < 5.0  # refused before transformers builds 100,000 layers
    assert "component 'text_encoder'" in str(info.value) and "config.json" in str(info.value)


def test_requested_sizes_are_bounded():
    limits.check_image_request(1024, 1024, batch=4, num_inference_steps=50)
    with pytest.raises(LimitError, match=r"height = 100000 is above the limit of 16384 \(image_side\)"):
        limits.check_image_request(100_000, 64)
    with pytest.raises(LimitError, match=r"height \* width = 150000000 is above .*image_pixels"):
        limits.check_image_request(15_000, 10_000)
    with pytest.raises(LimitError, match="batch size"):
        limits.check_image_request(batch=10**6)
    with pytest.raises(LimitError, match="num_inference_steps"):
        limits.check_image_request(num_inference_steps=10**7)
    with limits.raised(image_side=20_000, image_pixels=20_000 * 64):
        limits.check_image_request(20_000, 64)


def test_a_pipeline_call_with_a_huge_size_is_refused_before_allocating(tiny_sd_dir):
    from diffblocks import Pipeline

    pipe = Pipeline.from_pretrained(tiny_sd_dir)
    start = time.perf_counter()
    with pytest.raises(Exception) as info:
        pipe(prompt="a cat", height=100_000, width=100_000, num_inference_steps=1, output_type="latent")
    assert time.perf_counter() - start < 10
    assert isinstance(info.value, LimitError) or isinstance(info.value.__cause__, LimitError), repr(info.value)
    assert "image_side" in str(info.value)
    with pytest.raises(Exception, match="batch size"):
        pipe(prompt="a cat", num_images_per_prompt=10**6, num_inference_steps=1, output_type="latent")
