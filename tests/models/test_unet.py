"""UNet2DConditionModel parity with diffusers, both directions, on tiny SD 1.5 / SD 2 / SDXL / inpaint configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from diffblocks.models import UNet2DConditionModel
from tests.models.tiny import CONFIGS, SD15, SDXL, save_diffusers_unet, unet_inputs

TOL = 1e-5  # fp32 max abs difference


def _run(model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).sample


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any, UNet2DConditionModel, Path]:
    """(config name, diffusers model, our model loaded from diffusers' folder, that folder)."""
    folder = tmp_path_factory.mktemp(request.param)
    ref = save_diffusers_unet(CONFIGS[request.param], folder)
    return request.param, ref, UNet2DConditionModel.from_pretrained(folder), folder


def test_loads_diffusers_folder_with_identical_outputs(pair: tuple) -> None:
    name, ref, ours, _ = pair
    inputs = unet_inputs(CONFIGS[name])
    torch.testing.assert_close(_run(ours, inputs), _run(ref, inputs), atol=TOL, rtol=0)
    assert not ours.training and ours.dtype == torch.float32


def test_diffusers_loads_what_we_save(pair: tuple, tmp_path: Path) -> None:
    from diffusers import UNet2DConditionModel as DiffusersUNet

    name, _, ours, _ = pair
    ours.save_pretrained(tmp_path)
    back = DiffusersUNet.from_pretrained(tmp_path).eval()
    inputs = unet_inputs(CONFIGS[name], seed=1)
    torch.testing.assert_close(_run(back, inputs), _run(ours, inputs), atol=TOL, rtol=0)


def test_state_dict_keys_and_config_match_diffusers(pair: tuple) -> None:
    _, ref, ours, _ = pair
    assert list(ours.state_dict()) == list(ref.state_dict())
    for key, value in ours.config.to_dict().items():
        if not key.startswith("_"):
            expected = ref.config[key]
            assert (list(expected) if isinstance(expected, tuple) else expected) == value, key


def test_timestep_forms_and_return_tuple(pair: tuple) -> None:
    name, ref, ours, _ = pair
    inputs = unet_inputs(CONFIGS[name])
    for t in (500, 500.5, torch.tensor(500), torch.tensor([500, 500])):
        inputs["timestep"] = t
        torch.testing.assert_close(_run(ours, inputs), _run(ref, inputs), atol=TOL, rtol=0)
    with torch.no_grad():
        out = ours(**inputs, return_dict=False)
        named = ours(**inputs)
    assert isinstance(out, tuple) and len(out) == 1
    torch.testing.assert_close(named[0], out[0])


def test_odd_sizes_masks_and_controlnet_residuals(tmp_path: Path) -> None:
    ref = save_diffusers_unet(SD15, tmp_path)
    ours = UNet2DConditionModel.from_pretrained(tmp_path)
    inputs = unet_inputs(SD15, size=13)  # not divisible by 2: up blocks upsample to the skip's size
    mask = torch.ones(2, 7)
    mask[0, 5:] = 0
    inputs["encoder_attention_mask"] = mask
    torch.testing.assert_close(_run(ours, inputs), _run(ref, inputs), atol=TOL, rtol=0)

    inputs = unet_inputs(SD15)
    with torch.no_grad():
        h = ours.conv_in(inputs["sample"])
    g = torch.Generator().manual_seed(3)
    # One residual per skip state: conv_in, 2 per level + a downsample except at the last level.
    shapes = [(32, 16), (32, 16), (32, 16), (32, 8), (64, 8), (64, 8)]
    inputs["down_block_additional_residuals"] = tuple(torch.randn(2, c, s, s, generator=g) for c, s in shapes)
    inputs["mid_block_additional_residual"] = torch.randn(2, 64, 8, 8, generator=g)
    assert h.shape[1:] == (32, 16, 16)
    torch.testing.assert_close(_run(ours, inputs), _run(ref, inputs), atol=TOL, rtol=0)


def test_t2i_adapter_residuals_and_half_controlnet_inputs(tmp_path: Path) -> None:
    ref = save_diffusers_unet(SD15, tmp_path)
    ours = UNet2DConditionModel.from_pretrained(tmp_path)
    g = torch.Generator().manual_seed(4)
    # After the plain block (on its downsampled output), after the cross-attention block's last
    # transformer, and one more of the mid block's shape.
    features = [torch.randn(2, c, 8, 8, generator=g) for c in (32, 64, 64)]
    inputs = unet_inputs(SD15)
    with torch.no_grad():
        theirs = ref(**inputs, down_intrablock_additional_residuals=[f.clone() for f in features]).sample
        mine = ours(**inputs, down_intrablock_additional_residuals=features).sample
    torch.testing.assert_close(mine, theirs, atol=TOL, rtol=0)
    assert not torch.allclose(mine, _run(ours, inputs), atol=1e-3)
    with pytest.raises(ValueError, match="mid_block_additional_residual"):
        ours(**inputs, down_block_additional_residuals=tuple(features))


EXTRA_CONFIGS = {
    # SD 2 x4 upscaler: class labels (noise level) and only_cross_attention per block.
    "class_labels": {**SD15, "num_class_embeds": 10, "only_cross_attention": [False, True]},
    # SD 2.1 unCLIP: projected class embedding.
    "projection": {**SD15, "class_embed_type": "projection", "projection_class_embeddings_input_dim": 12},
    # LCM-distilled UNets: a guidance-scale condition on the timestep embedding.
    "lcm": {**SD15, "time_cond_proj_dim": 16, "center_input_sample": True},
    # Explicit head counts through num_attention_heads-free per-block tuples and no mid block.
    "no_mid": {**SD15, "mid_block_type": None, "attention_head_dim": [4, 8], "cross_attention_dim": [32, 32]},
    # SDXL-like with asymmetric up-path depths.
    "reverse_depths": {**SDXL, "reverse_transformer_layers_per_block": [[3, 2, 1], [2, 1, 1], [1, 1, 1]]},
}


@pytest.mark.parametrize("name", sorted(EXTRA_CONFIGS))
def test_more_config_branches(name: str, tmp_path: Path) -> None:
    config = EXTRA_CONFIGS[name]
    ref = save_diffusers_unet(config, tmp_path)
    ours = UNet2DConditionModel.from_pretrained(tmp_path)
    inputs = unet_inputs(config)
    if name == "class_labels":
        inputs["class_labels"] = torch.tensor([3, 7])
    if name == "projection":
        inputs["class_labels"] = torch.randn(2, 12)
    if name == "lcm":
        inputs["timestep_cond"] = torch.randn(2, 16)
    torch.testing.assert_close(_run(ours, inputs), _run(ref, inputs), atol=TOL, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_close_to_diffusers(dtype: torch.dtype, tmp_path: Path) -> None:
    from diffusers import UNet2DConditionModel as DiffusersUNet

    save_diffusers_unet(SDXL, tmp_path)
    ours = UNet2DConditionModel.from_pretrained(tmp_path, torch_dtype=dtype)
    ref = DiffusersUNet.from_pretrained(tmp_path, torch_dtype=dtype).eval()
    assert ours.dtype == dtype
    inputs = unet_inputs(SDXL)
    inputs["sample"] = inputs["sample"].to(dtype)
    inputs["encoder_hidden_states"] = inputs["encoder_hidden_states"].to(dtype)
    inputs["added_cond_kwargs"]["text_embeds"] = inputs["added_cond_kwargs"]["text_embeds"].to(dtype)
    a, b = _run(ours, inputs), _run(ref, inputs)
    assert a.dtype == dtype and torch.isfinite(a).all()
    # Kernel order differs in half precision; compare with a tolerance scaled to the dtype.
    torch.testing.assert_close(a.float(), b.float(), atol=0.05, rtol=0.05)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("down_block_types", ["SimpleCrossAttnDownBlock2D", "DownBlock2D"]),
        ("mid_block_type", "UNetMidBlock2DSimpleCrossAttn"),
        ("resnet_time_scale_shift", "spatial"),
        ("addition_embed_type", "text_image"),
        ("time_embedding_type", "fourier"),
        ("encoder_hid_dim", 16),
    ],
)
def test_unsupported_config_values_name_key_and_value(key: str, value: Any) -> None:
    with pytest.raises(ValueError, match=key) as info:
        UNet2DConditionModel.from_config({**SD15, key: value})
    assert repr(value if not isinstance(value, list) else value[0])[:20] in str(info.value)


def test_missing_sdxl_inputs_are_named() -> None:
    model = UNet2DConditionModel.from_config(SDXL)
    inputs = unet_inputs(SDXL)
    del inputs["added_cond_kwargs"]["time_ids"]
    with pytest.raises(ValueError, match="time_ids"):
        model(**inputs)


def test_kwargs_construction_and_config_access() -> None:
    model = UNet2DConditionModel(**SD15)
    assert model.config.cross_attention_dim == 32
    assert model.config.block_out_channels == (32, 64)
    same = UNet2DConditionModel(model.config)
    assert same.config == model.config
    assert UNet2DConditionModel.from_config(model.config.to_dict()).config == model.config
    direct = UNet2DConditionModel.config_class(**SD15)  # lists given to the dataclass directly
    assert direct == model.config and hash(direct) == hash(model.config)


def test_attention_backend_setting() -> None:
    from diffblocks.models.attention import set_attention_backend

    model = UNet2DConditionModel.from_config(SD15)
    inputs = unet_inputs(SD15, batch=1, size=8)
    expected = _run(model, inputs)
    try:
        set_attention_backend("math")
        torch.testing.assert_close(_run(model, inputs), expected, atol=TOL, rtol=0)
    finally:
        set_attention_backend(None)
    with pytest.raises(ValueError, match="unknown attention backend"):
        set_attention_backend("fastest")
