"""Model-level single files: our export read back by diffusers and by us, and full-size layouts.

Parity: a tiny diffusers model is saved in diffusers' layout, loaded by us, exported with our
``save_single_file``; diffusers' ``from_single_file(file, config=<tiny folder>)`` and ours
must both give the original model's outputs (<= 1e-5 in fp32; in practice the weights are
bit-identical).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diffblocks.models import AutoencoderKL, FluxTransformer2DModel, UNet2DConditionModel
from diffblocks.models.modeling import skip_meta_init
from diffblocks.models.single_file.checkpoint import CheckpointError
from diffblocks.models.single_file.detect import detect, standard_family, unet_config, vae_config
from diffblocks.models.single_file.models import key_map, original_state_dict
from tests.single_file.reference import flux_width_from_file, max_diff

TOL = 1e-5
OURS = {"unet": UNet2DConditionModel, "vae": AutoencoderKL, "transformer": FluxTransformer2DModel}


@pytest.fixture(scope="module")
def tiny_flux_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.components.tiny_pipelines import flux_components

    folder = tmp_path_factory.mktemp("flux")
    flux_components(tokenizer_dir=folder / "tok")["transformer"].save_pretrained(folder / "transformer")
    return folder


def _inputs(name: str, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    cfg = model.config
    if name == "unet":
        kw = {"sample": torch.randn(2, 4, 16, 16, generator=g), "timestep": torch.tensor([10, 500]),
              "encoder_hidden_states": torch.randn(2, 7, cfg.cross_attention_dim, generator=g)}
        if cfg.addition_embed_type == "text_time":
            pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
            kw["added_cond_kwargs"] = {"text_embeds": torch.randn(2, pooled, generator=g),
                                       "time_ids": torch.tensor([[32.0, 32, 0, 0, 32, 32]] * 2)}
        return kw
    if name == "vae":
        return {"sample": torch.randn(1, 3, 32, 32, generator=g)}
    ids = torch.zeros(16, 3)
    ids[:, 1], ids[:, 2] = torch.arange(16) // 4, torch.arange(16) % 4
    return {"hidden_states": torch.randn(1, 16, 4, generator=g),
            "encoder_hidden_states": torch.randn(1, 5, 32, generator=g),
            "pooled_projections": torch.randn(1, 32, generator=g), "timestep": torch.tensor([0.5]),
            "img_ids": ids, "txt_ids": torch.zeros(5, 3)}


def _run(name: str, model: torch.nn.Module, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        if name == "vae":
            return model(inputs["sample"], sample_posterior=False).sample
        return model(**inputs, return_dict=False)[0]


CASES = [("tiny_sd_dir", "unet"), ("tiny_sd_dir", "vae"), ("tiny_sdxl_dir", "unet"), ("tiny_sdxl_dir", "vae"),
         ("tiny_flux_dir", "transformer")]


@pytest.mark.parametrize(("folder_fixture", "name"), CASES)
def test_export_then_load_in_diffusers_and_ours(folder_fixture: str, name: str, tmp_path: Path, request) -> None:
    import diffusers

    folder: Path = request.getfixturevalue(folder_fixture)
    cls = OURS[name]
    reference = getattr(diffusers, cls.__name__).from_pretrained(folder / name).eval()
    ours = cls.from_pretrained(folder, subfolder=name)
    file = ours.save_single_file(tmp_path / "model.safetensors")

    with flux_width_from_file():
        theirs_loaded = getattr(diffusers, cls.__name__).from_single_file(str(file), config=str(folder), subfolder=name)
    ours_loaded = cls.from_single_file(file, config=folder, subfolder=name)
    ours_inferred = cls.from_single_file(file)  # the config we embed in the file's metadata

    assert max_diff(reference.state_dict(), theirs_loaded.state_dict()) == 0.0
    assert max_diff(reference.state_dict(), ours_loaded.state_dict()) == 0.0
    assert ours_inferred.config == ours.config
    inputs = _inputs(name, ours)
    expected = _run(name, reference, inputs)
    for model in (theirs_loaded.eval(), ours_loaded, ours_inferred):
        assert (_run(name, model, inputs) - expected).abs().max().item() <= TOL


def test_bfl_keys_are_fused_and_swapped(tiny_flux_dir: Path, tmp_path: Path) -> None:
    """The BFL layout really is different: qkv fused, final modulation halves swapped."""
    ours = FluxTransformer2DModel.from_pretrained(tiny_flux_dir, subfolder="transformer")
    original = original_state_dict(ours)
    block = ours.transformer_blocks[0].attn
    fused = torch.cat([block.to_q.weight, block.to_k.weight, block.to_v.weight])
    assert torch.equal(original["double_blocks.0.img_attn.qkv.weight"], fused)
    scale, shift = ours.norm_out.linear.weight.chunk(2)
    assert torch.equal(original["final_layer.adaLN_modulation.1.weight"], torch.cat([shift, scale]))
    assert not any("to_q" in k for k in original)


def test_config_that_does_not_fit_is_one_error(tiny_sd_dir: Path, tiny_sdxl_dir: Path, tmp_path: Path) -> None:
    file = UNet2DConditionModel.from_pretrained(tiny_sd_dir, subfolder="unet").save_single_file(tmp_path / "u.safetensors")
    with pytest.raises(Exception, match=r"(?s)u\.safetensors.*(missing|wrong shapes|no place)"):
        UNet2DConditionModel.from_single_file(file, config=tiny_sdxl_dir, subfolder="unet")
    with pytest.raises(CheckpointError, match=r"holds a unet checkpoint; AutoencoderKL expected keys like"):
        AutoencoderKL.from_single_file(file)


# -- full-size layouts on the meta device -------------------------------------------------------
def _meta(cls: type, config: dict) -> torch.nn.Module:
    with skip_meta_init():
        return cls(cls.config_class.from_dict(config))


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_full_size_unet_and_vae_convert_both_ways_without_a_miss(family: str) -> None:
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    configs = standard_family(family)["components"]
    for name, cls, convert in (("unet", UNet2DConditionModel, convert_ldm_unet_checkpoint),
                               ("vae", AutoencoderKL, convert_ldm_vae_checkpoint)):
        model = _meta(cls, configs[name])
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        original = original_state_dict(model, prefix="model.diffusion_model." if name == "unet" else "first_stage_model.")
        # diffusers' own LDM -> diffusers conversion reads our layout back to every key and shape
        theirs = convert(dict(original), dict(configs[name]))
        assert {k: tuple(v.shape) for k, v in theirs.items()} == expected
        # and ours: every original key used, every model key produced
        mapping = key_map(model, prefix="model.diffusion_model." if name == "unet" else "first_stage_model.")
        back = mapping.to_model(original, {k: v.shape for k, v in model.state_dict().items()})
        assert {k: tuple(v.shape) for k, v in back.items()} == expected
        assert mapping.original_keys == set(original)
        # the config inferred from the shapes is the standard one
        shape = lambda k: tuple(original[k].shape) if k in original else None  # noqa: E731
        if name == "unet":
            inferred = unet_config(set(original), shape, "model.diffusion_model.")
        else:
            inferred = vae_config(set(original), shape, "first_stage_model.", family)
        assert cls.config_class.from_dict(inferred) == cls.config_class.from_dict(configs[name])
        if name == "unet":
            assert detect(list(original), shape).kind == "unet"


def test_full_size_flux_dev_converts_both_ways_without_a_miss() -> None:
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    config = {"in_channels": 64, "num_layers": 19, "num_single_layers": 38, "attention_head_dim": 128,
              "num_attention_heads": 24, "joint_attention_dim": 4096, "pooled_projection_dim": 768,
              "guidance_embeds": True, "axes_dims_rope": [16, 56, 56]}
    model = _meta(FluxTransformer2DModel, config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    original = original_state_dict(model)
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(original))
    assert {k: tuple(v.shape) for k, v in theirs.items()} == expected
    back = key_map(model).to_model(original, {k: v.shape for k, v in model.state_dict().items()})
    assert {k: tuple(v.shape) for k, v in back.items()} == expected
    from diffblocks.models.single_file.detect import flux_config

    inferred = flux_config(set(original), lambda k: tuple(original[k].shape) if k in original else None, "")
    assert FluxTransformer2DModel.config_class.from_dict(inferred) == model.config
