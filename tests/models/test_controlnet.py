"""ControlNetModel and T2IAdapter parity with diffusers on tiny SD 1.5 / SD 2 / SDXL configs, both directions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from diffblocks.models import ControlNetModel, T2IAdapter, UNet2DConditionModel
from tests.models.tiny import SD2, SD15, SDXL, randomize_, save_diffusers_unet, unet_inputs

TOL = 1e-5  # fp32: max abs difference per unit of the largest value


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    # Relative to the residuals' scale (up to ~4 here): the CPU kernels' fused products round
    # differently from diffusers' stock ops, ~5e-6 of the value.
    torch.testing.assert_close(a, b, atol=TOL * max(1.0, b.abs().max().item()), rtol=0)
UNET_ONLY = ("up_block_types", "out_channels", "sample_size")


def _controlnet_config(unet: dict[str, Any], **extra: Any) -> dict[str, Any]:
    config = {k: v for k, v in unet.items() if k not in UNET_ONLY}
    config["conditioning_embedding_out_channels"] = [8, 16]  # 16x16 latents from a 32x32 control image
    return {**config, **extra}


CONFIGS = {
    "sd15": _controlnet_config(SD15),
    "sd2": _controlnet_config(SD2),
    "sdxl": _controlnet_config(SDXL),
    "bgr_pooled": _controlnet_config(SD15, controlnet_conditioning_channel_order="bgr", global_pool_conditions=True),
}


def _inputs(config: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    kwargs = unet_inputs({**config, "in_channels": config.get("in_channels", 4)}, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    kwargs["controlnet_cond"] = torch.rand(2, 3, 32, 32, generator=g)
    return kwargs


def _residuals(model: torch.nn.Module, inputs: dict[str, Any], **kw: Any) -> list[torch.Tensor]:
    with torch.no_grad():
        down, mid = model(**inputs, **kw, return_dict=False)
    return [*down, mid]


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any, ControlNetModel]:
    from diffusers import ControlNetModel as DiffusersControlNet

    torch.manual_seed(0)
    ref = DiffusersControlNet(**CONFIGS[request.param]).eval()
    randomize_(ref)
    # The zero convs start at zero: make them large enough that every residual matters.
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")):
                p.normal_(0, 0.3)
    folder = tmp_path_factory.mktemp(request.param)
    ref.save_pretrained(folder)
    return request.param, ref, ControlNetModel.from_pretrained(folder)


@pytest.mark.parametrize("kw", [{}, {"conditioning_scale": 0.6}, {"guess_mode": True, "conditioning_scale": 0.8}])
def test_residuals_match_diffusers(pair: tuple, kw: dict[str, Any]) -> None:
    name, ref, ours = pair
    inputs = _inputs(CONFIGS[name])
    got, want = _residuals(ours, inputs, **kw), _residuals(ref, inputs, **kw)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        _close(a, b)
    assert all(r.abs().max() > 1e-3 for r in got)  # the control image reaches every residual


def test_diffusers_loads_what_we_save_and_keys_match(pair: tuple, tmp_path: Path) -> None:
    from diffusers import ControlNetModel as DiffusersControlNet

    name, ref, ours = pair
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.save_pretrained(tmp_path)
    back = DiffusersControlNet.from_pretrained(tmp_path).eval()
    inputs = _inputs(CONFIGS[name], seed=1)
    for a, b in zip(_residuals(back, inputs), _residuals(ours, inputs)):
        _close(a, b)


def test_residuals_steer_our_unet_like_diffusers(tmp_path: Path) -> None:
    """UNet + ControlNet residuals end to end (the residual path of the UNet is exercised too)."""
    from diffusers import ControlNetModel as DiffusersControlNet

    ref_unet = save_diffusers_unet(SDXL, tmp_path / "unet")
    unet = UNet2DConditionModel.from_pretrained(tmp_path / "unet")
    ours = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16))
    ref = DiffusersControlNet.from_unet(ref_unet, conditioning_embedding_out_channels=(8, 16)).eval()
    # from_unet copies the encoder and zero-initialises the zero convs, as diffusers does.
    zero = ("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")
    for (k, a), (k2, b) in zip(ours.state_dict().items(), ref.state_dict().items(), strict=True):
        assert k == k2
        if k.startswith(zero):
            assert not a.any() and not b.any(), k
        elif not k.startswith("controlnet_cond_embedding"):  # the rest of it is freshly initialised
            torch.testing.assert_close(a, b, atol=0, rtol=0)
    randomize_(ours, seed=3)
    ref.load_state_dict(ours.state_dict())
    inputs = _inputs(_controlnet_config(SDXL))
    down, mid = ours(**inputs, return_dict=False)
    down_ref, mid_ref = ref(**inputs, return_dict=False)
    unet_inputs_ = {k: v for k, v in inputs.items() if k != "controlnet_cond"}
    with torch.no_grad():
        got = unet(**unet_inputs_, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        want = ref_unet(**unet_inputs_, down_block_additional_residuals=down_ref, mid_block_additional_residual=mid_ref).sample
        plain = unet(**unet_inputs_).sample
    _close(got, want)
    assert (got - plain).abs().max() > 1e-3


def test_bad_config_names_the_key() -> None:
    with pytest.raises(ValueError, match="ControlNetModel.*controlnet_conditioning_channel_order"):
        ControlNetModel(_controlnet_config(SD15, controlnet_conditioning_channel_order="grb"))
    with pytest.raises(ValueError, match="ControlNetModel.*down_block_types"):
        ControlNetModel(_controlnet_config(SD15, down_block_types=["DownBlock2D", "FancyBlock"]))


ADAPTERS = {
    "full_adapter": {"channels": [32, 64], "num_res_blocks": 2, "downscale_factor": 8},
    "full_adapter_xl": {"channels": [32, 64, 64], "num_res_blocks": 2, "downscale_factor": 16},
    "light_adapter": {"channels": [32, 64], "num_res_blocks": 2, "downscale_factor": 8},
}


@pytest.mark.parametrize("adapter_type", sorted(ADAPTERS))
def test_t2i_adapter_matches_diffusers_both_directions(adapter_type: str, tmp_path: Path) -> None:
    from diffusers import T2IAdapter as DiffusersAdapter

    torch.manual_seed(0)
    ref = DiffusersAdapter(adapter_type=adapter_type, **ADAPTERS[adapter_type]).eval()
    randomize_(ref)
    ref.save_pretrained(tmp_path / "ref")
    ours = T2IAdapter.from_pretrained(tmp_path / "ref")
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert ours.total_downscale_factor == ref.total_downscale_factor
    image = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = ours(image), ref(image)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        _close(a, b)
    ours.save_pretrained(tmp_path / "ours")
    back = DiffusersAdapter.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        _close(back(image)[0], got[0])


# (UNet config, adapter type, channels, downscale): adapter features line up with the UNet's blocks.
STEERED = {
    "sd2-full": (SD2, "full_adapter", [32, 64, 64], 8),
    "sd2-light": (SD2, "light_adapter", [32, 64, 64], 8),
    "sdxl-full_xl": (SDXL, "full_adapter_xl", [32, 64, 64], 16),
}


@pytest.mark.parametrize("case", sorted(STEERED))
def test_t2i_features_steer_our_unet_like_diffusers(case: str, tmp_path: Path) -> None:
    from diffusers import T2IAdapter as DiffusersAdapter

    unet_config, adapter_type, channels, downscale = STEERED[case]
    ref_unet = save_diffusers_unet(unet_config, tmp_path / "unet")
    unet = UNet2DConditionModel.from_pretrained(tmp_path / "unet")
    torch.manual_seed(0)
    ref = DiffusersAdapter(adapter_type=adapter_type, channels=channels, downscale_factor=downscale).eval()
    randomize_(ref)
    ref.save_pretrained(tmp_path / "adapter")
    ours = T2IAdapter.from_pretrained(tmp_path / "adapter")
    inputs = unet_inputs(unet_config)
    image = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(2))  # 16x16 latents
    with torch.no_grad():
        feats = [f * 0.7 for f in ours(image)]
        feats_ref = [f * 0.7 for f in ref(image)]
        got = unet(**inputs, down_intrablock_additional_residuals=feats).sample
        want = ref_unet(**inputs, down_intrablock_additional_residuals=feats_ref).sample
        plain = unet(**inputs).sample
    _close(got, want)
    assert (got - plain).abs().max() > 1e-3
