"""AutoencoderKL: parity with diffusers (plain, tiled, sliced, sampled), saving, legacy keys, errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from diffblocks.models.autoencoder_kl import AutoencoderKL, AutoencoderKLConfig

from .tiny_flux_vae import (
    FLUX1_VAE_CONFIG, SD15_VAE_CONFIG, SDXL_VAE_CONFIG, VAE_FLUX_LIKE, VAE_SD_LIKE, max_diff,
    same_shapes)

diffusers = pytest.importorskip("diffusers")

CONFIGS = {"sd": VAE_SD_LIKE, "flux": VAE_FLUX_LIKE}
TOL = 1e-5


def _reference(config: dict, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return diffusers.AutoencoderKL(**config).eval()


def _factor(config: dict) -> int:
    return 2 ** (len(config["block_out_channels"]) - 1)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
    """(config, diffusers model, our model loaded from the folder diffusers saved)."""
    config = CONFIGS[request.param]
    ref = _reference(config)
    folder = tmp_path_factory.mktemp(f"vae-{request.param}")
    ref.save_pretrained(folder)
    return config, ref, AutoencoderKL.from_pretrained(folder)


@torch.no_grad()
def test_encode_decode_match_diffusers(pair):
    config, ref, ours = pair
    x = torch.randn(2, 3, 32, 24, generator=torch.Generator().manual_seed(1))
    expected, got = ref.encode(x).latent_dist, ours.encode(x).latent_dist
    assert max_diff(got.mean, expected.mean) <= TOL and max_diff(got.std, expected.std) <= TOL
    assert torch.equal(got.mode(), got.mean)
    # the same generator gives the same posterior sample
    sample = got.sample(torch.Generator().manual_seed(7))
    assert max_diff(sample, expected.sample(torch.Generator().manual_seed(7))) <= TOL
    (posterior,) = ours.encode(x, return_dict=False)
    assert torch.equal(posterior.mean, got.mean)

    z = expected.mode()
    assert max_diff(ours.decode(z).sample, ref.decode(z).sample) <= TOL
    assert ours.decode(z, return_dict=False)[0].shape == (2, 3, 32, 24)
    assert max_diff(ours(x).sample, ref(x).sample) <= TOL
    sampled = ours(x, sample_posterior=True, generator=torch.Generator().manual_seed(3), return_dict=False)[0]
    expected = ref(x, sample_posterior=True, generator=torch.Generator().manual_seed(3)).sample
    assert max_diff(sampled, expected) <= TOL


@torch.no_grad()
def test_tiled_and_sliced_match_diffusers(pair):
    config, ref, ours = pair
    g = torch.Generator().manual_seed(2)
    # larger than one tile (sample_size 32) in both directions, not a multiple of the tile stride
    x = torch.randn(2, 3, 56, 40, generator=g)
    z = torch.randn(2, config["latent_channels"], 56 // _factor(config), 40 // _factor(config), generator=g)
    ref.enable_tiling(), ours.enable_tiling()
    ref.enable_slicing(), ours.enable_slicing()
    try:
        tiled = ours.decode(z).sample
        assert tiled.shape == (2, 3, 56, 40)
        assert max_diff(tiled, ref.decode(z).sample) <= TOL
        assert max_diff(ours.encode(x).latent_dist.mean, ref.encode(x).latent_dist.mean) <= TOL
        ours.disable_slicing()
        assert max_diff(ours.decode(z).sample, tiled) <= TOL
    finally:
        ref.disable_tiling(), ours.disable_tiling(), ref.disable_slicing(), ours.disable_slicing()
    # tiling changes the result (seams are blended, not exact), so it must be off again now
    assert max_diff(ours.decode(z).sample, tiled) > TOL


@torch.no_grad()
def test_tiling_only_kicks_in_above_the_tile_size(pair):
    config, ref, ours = pair
    x = torch.randn(1, 3, 32, 32)  # exactly sample_size: one tile, nothing to blend
    z = torch.randn(1, config["latent_channels"], 32 // _factor(config), 32 // _factor(config))
    plain_mean, plain_image = ours.encode(x).latent_dist.mean, ours.decode(z).sample
    ours.enable_tiling()
    try:
        assert torch.equal(ours.encode(x).latent_dist.mean, plain_mean)
        assert torch.equal(ours.decode(z).sample, plain_image)
        # the explicit tiled methods tile at any size (here a full tile plus a sliver, blended)
        assert max_diff(ours.tiled_encode(x).latent_dist.mean, ref.tiled_encode(x).latent_dist.mean) <= TOL
        assert max_diff(ours.tiled_decode(z, return_dict=False)[0], ref.tiled_decode(z).sample) <= TOL
    finally:
        ours.disable_tiling()


@pytest.mark.parametrize("name", sorted(CONFIGS))
@torch.no_grad()
def test_diffusers_loads_what_we_save(tmp_path, name):
    config = CONFIGS[name]
    ours = AutoencoderKL.from_config(config).eval()
    ours.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["_class_name"] == "AutoencoderKL"
    ref = diffusers.AutoencoderKL.from_pretrained(tmp_path).eval()
    for key in ("shift_factor", "scaling_factor", "use_quant_conv", "use_post_quant_conv", "force_upcast"):
        assert getattr(ref.config, key) == getattr(ours.config, key)
    x = torch.randn(1, 3, 32, 32)
    assert max_diff(ref(x).sample, ours(x).sample) <= TOL
    ref.enable_tiling(), ours.enable_tiling()
    z = torch.randn(1, config["latent_channels"], 48 // _factor(config), 40 // _factor(config))
    assert max_diff(ref.decode(z).sample, ours.decode(z).sample) <= TOL


def test_config_surface():
    sd = AutoencoderKL.from_config(VAE_SD_LIKE).config
    assert (sd.scaling_factor, sd.shift_factor, sd.force_upcast) == (0.18215, None, True)
    assert (sd.use_quant_conv, sd.use_post_quant_conv, sd.sample_size) == (True, True, 32)
    assert sd.latent_channels == 4 and sd.block_out_channels == (32, 64)
    flux = AutoencoderKLConfig.from_dict(VAE_FLUX_LIKE)
    assert (flux.shift_factor, flux.force_upcast, flux.use_quant_conv) == (0.1159, False, False)
    model = AutoencoderKL.from_config(VAE_FLUX_LIKE)
    assert model.quant_conv is None and model.post_quant_conv is None
    assert not any(k.startswith(("quant_conv", "post_quant_conv")) for k in model.state_dict())


@torch.no_grad()
def test_no_mid_block_attention_matches_diffusers(tmp_path):
    config = {**VAE_SD_LIKE, "mid_block_add_attention": False}
    ref = _reference(config)
    ref.save_pretrained(tmp_path)
    ours = AutoencoderKL.from_pretrained(tmp_path)
    assert not any(".attentions." in k for k in ours.state_dict())
    x = torch.randn(1, 3, 16, 16)
    assert max_diff(ours(x).sample, ref(x).sample) <= TOL


@torch.no_grad()
def test_legacy_attention_names_load(tmp_path):
    ref = _reference(VAE_SD_LIKE)
    ref.save_pretrained(tmp_path)
    old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    state = {}
    for key, tensor in ref.state_dict().items():
        for new, legacy in old.items():
            if ".attentions." in key and f".{new}." in key:
                key = key.replace(f".{new}.", f".{legacy}.")
                if key.endswith("weight") and legacy in ("query", "key"):
                    tensor = tensor[:, :, None, None]  # some old files hold 1x1 conv kernels
        state[key] = tensor.contiguous()
    save_file(state, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    ours = AutoencoderKL.from_pretrained(tmp_path)
    x = torch.randn(1, 3, 16, 16)
    assert max_diff(ours(x).sample, ref(x).sample) <= TOL


@pytest.mark.parametrize(("key", "value"), [
    ("down_block_types", ["DownEncoderBlock2D", "AttnDownEncoderBlock2D"]),
    ("up_block_types", ["UpDecoderBlock2D"]),
    ("act_fn", "tanh"),
])
def test_unsupported_config_names_key_and_value(key, value):
    with pytest.raises(ValueError, match=f"{key}.*{value[-1] if isinstance(value, list) else value}"):
        AutoencoderKLConfig.from_dict({**VAE_SD_LIKE, key: value})


def test_posterior_sampling_with_generator_list_matches_diffusers():
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution as RefDist

    from diffblocks.models.vae_blocks import DiagonalGaussianDistribution

    moments = torch.randn(3, 8, 4, 4)
    ours, ref = DiagonalGaussianDistribution(moments), RefDist(moments)
    gens = lambda: [torch.Generator().manual_seed(s) for s in (1, 2, 3)]  # noqa: E731
    assert torch.equal(ours.sample(gens()), ref.sample(gens()))
    assert torch.allclose(ours.kl(), ref.kl()) and torch.allclose(ours.kl(ref), ref.kl(ref))
    assert torch.allclose(ours.nll(moments[:, :4]), ref.nll(moments[:, :4]))
    fixed = DiagonalGaussianDistribution(moments, deterministic=True)
    assert torch.equal(fixed.sample(torch.Generator().manual_seed(0)), fixed.mean)


def test_backward_runs():
    """The VAE is trained in-repo (the tiny shapes model): gradients must flow to every weight."""
    model = AutoencoderKL.from_config(VAE_SD_LIKE)
    x = torch.randn(1, 3, 16, 16)
    posterior = model.encode(x).latent_dist
    loss = (model.decode(posterior.sample()).sample - x).pow(2).mean() + posterior.kl().mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@torch.no_grad()
def test_low_precision_close_to_diffusers(dtype):
    ref = _reference(VAE_SD_LIKE)
    ours = AutoencoderKL.from_config(VAE_SD_LIKE).eval()
    ours.load_state_dict(ref.state_dict())
    ref, ours = ref.to(dtype), ours.to(dtype)
    x = torch.randn(1, 3, 16, 16).to(dtype)
    got = ours(x).sample
    assert got.dtype == dtype and ours.dtype == dtype
    assert max_diff(got, ref(x).sample) <= 2e-2


@pytest.mark.parametrize("config", [SD15_VAE_CONFIG, SDXL_VAE_CONFIG, FLUX1_VAE_CONFIG],
                         ids=["sd15", "sdxl", "flux"])
def test_published_configs_build_diffusers_shapes(config):
    """Full-size published VAE configs, built on the meta device: identical weight names and shapes."""
    with torch.device("meta"):
        ours = AutoencoderKL.from_config(config)
        ref = diffusers.AutoencoderKL.from_config(config)
    assert same_shapes(ours, ref)
    assert ours.tile_latent_min_size == ref.tile_latent_min_size
    assert ours.config.scaling_factor == ref.config.scaling_factor
    assert ours.config.shift_factor == ref.config.shift_factor
