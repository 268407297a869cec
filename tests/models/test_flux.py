"""FluxTransformer2DModel: parity with diffusers in both directions, input forms, errors."""

from __future__ import annotations

import json

import pytest
import torch

from diffblocks.models import flux as flux_module
from diffblocks.models.flux import FluxTransformer2DConfig, FluxTransformer2DModel
from diffblocks.models.modeling import ModelLoadError

from .tiny_flux_vae import (
    FLUX1_DEV_CONFIG, FLUX1_SCHNELL_CONFIG, FLUX_DEV_LIKE, FLUX_PATCHED, FLUX_SCHNELL_LIKE, flux_inputs,
    max_diff, same_shapes)

diffusers = pytest.importorskip("diffusers")

CONFIGS = {"schnell": FLUX_SCHNELL_LIKE, "dev": FLUX_DEV_LIKE, "patched": FLUX_PATCHED}


def _reference(config: dict, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return diffusers.FluxTransformer2DModel(**config).eval()


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def saved_reference(request, tmp_path_factory):
    """(config, diffusers model, folder it was saved to)."""
    config = CONFIGS[request.param]
    ref = _reference(config)
    folder = tmp_path_factory.mktemp(f"flux-{request.param}")
    ref.save_pretrained(folder)
    return config, ref, folder


@torch.no_grad()
def test_loads_diffusers_folder_and_matches(saved_reference):
    config, ref, folder = saved_reference
    ours = FluxTransformer2DModel.from_pretrained(folder)
    inputs = flux_inputs(config)
    expected = ref(**inputs, return_dict=False)[0]
    got = ours(**inputs).sample
    assert got.shape == expected.shape
    assert max_diff(got, expected) <= 1e-5
    (as_tuple,) = ours(**inputs, return_dict=False)
    assert torch.equal(as_tuple, got)


@pytest.mark.parametrize("name", sorted(CONFIGS))
@torch.no_grad()
def test_diffusers_loads_what_we_save(tmp_path, name):
    config = CONFIGS[name]
    ours = FluxTransformer2DModel.from_config(config).eval()
    ours.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["_class_name"] == "FluxTransformer2DModel"
    assert saved["guidance_embeds"] is config["guidance_embeds"]
    ref = diffusers.FluxTransformer2DModel.from_pretrained(tmp_path).eval()
    inputs = flux_inputs(config, seed=3)
    assert max_diff(ref(**inputs).sample, ours(**inputs).sample) <= 1e-5


@torch.no_grad()
def test_input_forms_agree():
    model = FluxTransformer2DModel.from_config(FLUX_SCHNELL_LIKE).eval()
    inputs = flux_inputs(FLUX_SCHNELL_LIKE, batch=2)
    inputs["timestep"] = torch.tensor([0.25, 0.25])
    base = model(**inputs).sample
    # deprecated 3-D ids with a batch axis, and a python-number timestep
    batched = {**inputs, "img_ids": inputs["img_ids"][None].expand(2, -1, -1),
               "txt_ids": inputs["txt_ids"][None].expand(2, -1, -1), "timestep": 0.25}
    assert torch.equal(model(**batched).sample, base)


@torch.no_grad()
def test_timestep_is_scaled_by_1000_inside():
    """The pipeline passes sigma in [0, 1]; t=0.5 must differ from t=500 (the UNet convention)."""
    model = FluxTransformer2DModel.from_config(FLUX_SCHNELL_LIKE).eval()
    inputs = flux_inputs(FLUX_SCHNELL_LIKE)
    half = model(**{**inputs, "timestep": torch.tensor([0.5, 0.5])}).sample
    assert not torch.allclose(half, model(**{**inputs, "timestep": torch.tensor([500.0, 500.0])}).sample)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@torch.no_grad()
def test_low_precision_close_to_diffusers(dtype):
    ref = _reference(FLUX_DEV_LIKE)
    ours = FluxTransformer2DModel.from_config(FLUX_DEV_LIKE)
    ours.load_state_dict(ref.state_dict())
    ref, ours = ref.to(dtype), ours.to(dtype).eval()
    inputs = {k: v.to(dtype) if isinstance(v, torch.Tensor) and k not in ("img_ids", "txt_ids") else v
              for k, v in flux_inputs(FLUX_DEV_LIKE).items()}
    got = ours(**inputs).sample
    assert got.dtype == dtype
    assert max_diff(got, ref(**inputs).sample) <= 2e-2


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="axes_dims_rope"):
        FluxTransformer2DConfig.from_dict({**FLUX_SCHNELL_LIKE, "axes_dims_rope": [4, 4, 4]})


def test_wrong_class_name_is_rejected(tmp_path):
    FluxTransformer2DModel.from_config(FLUX_SCHNELL_LIKE).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "_class_name": "UNet2DConditionModel"}))
    with pytest.raises(ModelLoadError, match="_class_name"):
        FluxTransformer2DModel.from_pretrained(tmp_path)


@torch.no_grad()
def test_call_errors_are_clear():
    dev = FluxTransformer2DModel.from_config(FLUX_DEV_LIKE)
    schnell = FluxTransformer2DModel.from_config(FLUX_SCHNELL_LIKE)
    with pytest.raises(ValueError, match="pass guidance"):
        dev(**{**flux_inputs(FLUX_DEV_LIKE), "guidance": None})
    with pytest.raises(ValueError, match="guidance=None"):
        schnell(**{**flux_inputs(FLUX_SCHNELL_LIKE), "guidance": torch.ones(2)})
    with pytest.raises(ValueError, match="txt_ids"):
        schnell(**{**flux_inputs(FLUX_SCHNELL_LIKE), "txt_ids": None})
    with pytest.raises(ValueError, match="ip_adapter"):
        schnell(**flux_inputs(FLUX_SCHNELL_LIKE), joint_attention_kwargs={"ip_adapter_image_embeds": 1})


@pytest.mark.parametrize("config", [FLUX1_DEV_CONFIG, FLUX1_SCHNELL_CONFIG], ids=["dev", "schnell"])
def test_published_configs_build_diffusers_shapes(config):
    """Full-size Flux.1 configs, built on the meta device: identical weight names and shapes."""
    with torch.device("meta"):
        ours = FluxTransformer2DModel.from_config(config)
        ref = diffusers.FluxTransformer2DModel.from_config(config)
    assert same_shapes(ours, ref)
    assert ours.config.num_single_layers == 38 and ours.config.axes_dims_rope == (16, 56, 56)


@pytest.mark.parametrize("repeat", [False, True])
@torch.no_grad()
def test_controlnet_residuals_match_diffusers(repeat):
    ref = _reference(FLUX_PATCHED)  # 2 double + 2 single blocks
    ours = FluxTransformer2DModel.from_config(FLUX_PATCHED).eval()
    ours.load_state_dict(ref.state_dict())
    inputs = flux_inputs(FLUX_PATCHED)
    g = torch.Generator().manual_seed(5)
    tokens = inputs["hidden_states"].shape[:2]
    dim = FLUX_PATCHED["num_attention_heads"] * FLUX_PATCHED["attention_head_dim"]
    control = dict(controlnet_block_samples=[torch.randn(*tokens, dim, generator=g)],
                   controlnet_single_block_samples=[torch.randn(*tokens, dim, generator=g) for _ in range(2)],
                   controlnet_blocks_repeat=repeat)
    got = ours(**inputs, **control).sample
    assert max_diff(got, ref(**inputs, **control).sample) <= 1e-5
    assert max_diff(got, ours(**inputs).sample) > 1e-3  # the residuals did something


def test_rope_tables_are_reused_only_for_the_same_positions():
    torch.manual_seed(0)
    model = FluxTransformer2DModel(FluxTransformer2DConfig(**FLUX_DEV_LIKE)).eval()
    calls = []
    original = flux_module.rope_tables
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(flux_module, "rope_tables", lambda *a, **k: calls.append(1) or original(*a, **k))
        small, large = flux_inputs(FLUX_DEV_LIKE, grid=4), flux_inputs(FLUX_DEV_LIKE, grid=6)
        shifted = {**small, "img_ids": small["img_ids"] + 1}  # same shape, other positions
        with torch.no_grad():
            outs = [model(**inputs).sample for inputs in (small, small, large, shifted, small)]
    assert len(calls) == 4  # the second call with the same positions reuses the tables
    fresh = FluxTransformer2DModel(FluxTransformer2DConfig(**FLUX_DEV_LIKE)).eval()
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        for inputs, out in zip((small, small, large, shifted, small), outs):
            fresh._rope_cache = None  # every output equals one computed from fresh tables
            assert torch.equal(fresh(**inputs).sample, out)
