"""Models at sizes where the oneDNN routing engages (diffblocks.models.kernels) still equal
diffusers on the same weights and inputs, and really did run oneDNN's primitives.

The parity tests elsewhere use tiny configs that stay under the routing's work-size thresholds;
these use widths, token counts and heads wide enough to cross them (a few hundred ms each)."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from diffblocks.models import kernels
from diffblocks.models.autoencoder_kl import AutoencoderKL
from diffblocks.models.flux import FluxTransformer2DModel
from diffblocks.models.kernels import use_cpu_kernels
from diffblocks.models.unet_2d_condition import UNet2DConditionModel

from .tiny_flux_vae import flux_inputs, max_diff

diffusers = pytest.importorskip("diffusers")
pytestmark = pytest.mark.skipif(not kernels._AVAILABLE, reason="torch built without oneDNN")

ONEDNN_OPS = {"mkldnn::_linear_pointwise", "aten::mkldnn_convolution"}

UNET = dict(  # 1x1 projections (use_linear_projection off), 2 heads of 32 over 32x32 tokens
    block_out_channels=(64, 128), layers_per_block=1, cross_attention_dim=64, attention_head_dim=2,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    norm_num_groups=32, sample_size=32,
)
FLUX = dict(
    patch_size=1, in_channels=16, num_layers=1, num_single_layers=2, attention_head_dim=32,
    num_attention_heads=2, joint_attention_dim=64, pooled_projection_dim=32, axes_dims_rope=(8, 8, 16),
    guidance_embeds=True,
)
VAE = dict(  # a 64-channel mid block attending over 32x32 positions
    block_out_channels=(64, 64), down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=32, layers_per_block=1,
)


def _run_profiled(fn):
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        out = fn()
    return out, {e.key for e in prof.key_averages()}


def _pair(ours_cls, ref_cls, config, tmp_path):
    torch.manual_seed(0)
    ref = ref_cls(**config).eval()
    for p in ref.parameters():  # no zero-initialised layer may hide a wrong path
        p.data.add_(torch.randn_like(p) * 0.02)
    ref.save_pretrained(tmp_path)
    return ours_cls.from_pretrained(tmp_path), ref


def test_unet_parity_through_onednn(tmp_path):
    ours, ref = _pair(UNet2DConditionModel, diffusers.UNet2DConditionModel, UNET, tmp_path)
    g = torch.Generator().manual_seed(1)
    sample, context = torch.randn(2, 4, 32, 32, generator=g), torch.randn(2, 16, 64, generator=g)
    t = torch.tensor([999, 10])
    got, ops = _run_profiled(lambda: ours(sample, t, context).sample)
    assert ONEDNN_OPS <= ops
    assert "aten::gelu" not in ops  # every GEGLU ran as two products, the gate's with its GELU fused
    with torch.no_grad():
        expected = ref(sample, t, context).sample
    assert max_diff(got, expected) <= 1e-5 * expected.abs().max().item()  # measured ~1e-6


def test_flux_parity_through_onednn(tmp_path):
    ours, ref = _pair(FluxTransformer2DModel, diffusers.FluxTransformer2DModel, FLUX, tmp_path)
    inputs = flux_inputs(FLUX, batch=2, grid=24, text_len=8)
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        got = ours(**inputs).sample
    names = [e.name for e in prof.events()]
    assert "mkldnn::_linear_pointwise" in names
    # The tanh-GELU of the image stream's and the single blocks' MLPs ran fused into their
    # projections; only the 8 text tokens' MLP is under the work threshold and calls aten::gelu.
    assert names.count("aten::gelu") == FLUX["num_layers"]
    with torch.no_grad():
        expected = ref(**inputs, return_dict=False)[0]
    assert max_diff(got, expected) <= 1e-5 * expected.abs().max().item()  # measured ~1e-6


def test_vae_parity_through_onednn(tmp_path):
    ours, ref = _pair(AutoencoderKL, diffusers.AutoencoderKL, VAE, tmp_path)
    latents = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(2))
    got, ops = _run_profiled(lambda: ours.decode(latents).sample)
    assert "mkldnn::_linear_pointwise" in ops  # the mid block's attention (1024 tokens x 64)
    with torch.no_grad():
        expected = ref.decode(latents).sample
    assert max_diff(got, expected) <= 1e-5 * expected.abs().max().item()  # measured ~1e-6


def test_text_encoder_layers_switch_class_and_keep_their_outputs():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.CLIPTextConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=2,
                                         num_attention_heads=4, vocab_size=1000, max_position_embeddings=77)
    encoder = transformers.CLIPTextModel(config).eval()
    ids = torch.randint(0, 1000, (2, 77), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = encoder(ids).last_hidden_state
    keys = list(encoder.state_dict())
    assert use_cpu_kernels(encoder) is encoder
    assert all(type(m) is kernels.Linear for m in encoder.modules() if isinstance(m, torch.nn.Linear))
    assert list(encoder.state_dict()) == keys
    got, ops = _run_profiled(lambda: encoder(ids).last_hidden_state)
    assert "mkldnn::_linear_pointwise" in ops
    assert max_diff(got, expected) <= 1e-5 * expected.abs().max().item()


def test_left_alone_off_cpu_fp32_or_switched_off():
    layer = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3), torch.nn.Linear(4, 4))
    use_cpu_kernels(layer.double())
    assert type(layer[0]) is torch.nn.Conv2d and type(layer[1]) is torch.nn.Linear
    with kernels.cpu_kernels_enabled(False):
        use_cpu_kernels(layer.float())
    assert type(layer[1]) is torch.nn.Linear and layer[0].weight.is_contiguous()
    assert use_cpu_kernels("not a module") == "not a module"


def test_channels_last_weights_still_save_contiguous(tmp_path):
    from safetensors.torch import load_file, save_file

    net = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3), torch.nn.Linear(4, 4))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    use_cpu_kernels(net)
    assert type(net[0]) is kernels.Conv2d and type(net[1]) is kernels.Linear
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    state = net.state_dict()
    assert all(v.is_contiguous() for v in state.values())
    save_file(state, tmp_path / "w.safetensors")
    assert all(torch.equal(before[k], v) for k, v in load_file(tmp_path / "w.safetensors").items())
    net.load_state_dict(before)  # and loading back into the channels-last layer works
    assert torch.equal(net[0].weight, before["0.weight"])


def test_channels_last_models_match_diffusers(tmp_path):
    ours, ref = _pair(UNet2DConditionModel, diffusers.UNet2DConditionModel, UNET, tmp_path / "unet")
    use_cpu_kernels(ours)
    assert ours.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(1)
    sample, context = torch.randn(2, 4, 32, 32, generator=g), torch.randn(2, 16, 64, generator=g)
    t = torch.tensor([999, 10])
    with torch.no_grad():
        expected, got = ref(sample, t, context).sample, ours(sample, t, context).sample
    assert max_diff(got, expected) <= 1e-5 * expected.abs().max().item()  # measured ~2e-6
    vae, vae_ref = _pair(AutoencoderKL, diffusers.AutoencoderKL, VAE, tmp_path / "vae")
    latents = torch.randn(1, 4, 32, 32, generator=g)
    with torch.no_grad():
        expected, got = vae_ref.decode(latents).sample, use_cpu_kernels(vae).decode(latents).sample
    assert max_diff(got, expected) <= 1e-5 * expected.abs().max().item()  # measured ~2e-6


# Small heads and short text: 8 heads of 4 and 8 over 16x16 / 8x8 tokens, 16 text tokens; a VAE
# whose mid-block attention has one head of 8 channels over 24x24 positions.
UNET_SMALL_HEADS = dict(
    block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32, attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=8, sample_size=16,
)
VAE_SMALL_HEAD = dict(
    block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4, layers_per_block=1,
)


def _attention_ops(fn):
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        out = fn()
    widths = {e.input_shapes[0][-1] for e in prof.events()
              if e.name == "aten::_scaled_dot_product_flash_attention_for_cpu"}
    return out, widths, {e.name for e in prof.events()}


def test_small_heads_and_short_text_match_diffusers(tmp_path):
    ours, ref = _pair(UNet2DConditionModel, diffusers.UNet2DConditionModel, UNET_SMALL_HEADS, tmp_path / "unet")
    g = torch.Generator().manual_seed(3)
    sample, context = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 16, 32, generator=g)
    t = torch.tensor([999, 10])
    got, widths, names = _attention_ops(lambda: ours(sample, t, context).sample)
    assert widths == {16}  # cross-attention of the 64-token level over 16 text tokens: heads of 8 padded
    assert "aten::baddbmm" in names  # everything else: batched products (256 tokens, heads of 4)
    with torch.no_grad():
        expected = ref(sample, t, context).sample
    assert max_diff(got, expected) <= 1e-5 * expected.abs().max().item()  # measured ~1e-6
    vae, vae_ref = _pair(AutoencoderKL, diffusers.AutoencoderKL, VAE_SMALL_HEAD, tmp_path / "vae")
    latents = torch.randn(1, 4, 24, 24, generator=g)
    got, widths, names = _attention_ops(lambda: vae.decode(latents).sample)
    assert not widths and "aten::exp2_" in names  # one head of 8 channels over 576 positions: oneDNN
    with torch.no_grad():
        expected = vae_ref.decode(latents).sample
    assert max_diff(got, expected) <= 1e-5 * expected.abs().max().item()


# Deep levels over few positions (128 and 256 channels at 4x4 and 2x2): the loader's channels-last
# model runs those 3x3 convolutions, the stride-2 one included, as products of gathered patches.
UNET_DEEP = dict(
    block_out_channels=(32, 128, 256), layers_per_block=1, cross_attention_dim=32, attention_head_dim=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), norm_num_groups=32, sample_size=8,
)


def test_deep_few_position_convolutions_match_diffusers(tmp_path):
    ours, ref = _pair(UNet2DConditionModel, diffusers.UNet2DConditionModel, UNET_DEEP, tmp_path)
    use_cpu_kernels(ours)
    g = torch.Generator().manual_seed(4)
    sample, context = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 8, 32, generator=g)
    t = torch.tensor([999, 10])
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        got = ours(sample, t, context).sample
    products = {tuple(e.input_shapes[1]) for e in prof.events() if e.name == "mkldnn::_linear_pointwise"}
    assert {(256, 9 * 256), (128, 9 * 128)} <= products  # resnet convs at 2x2; the 4x4 -> 2x2 downsample
    with torch.no_grad():
        expected = ref(sample, t, context).sample
    assert max_diff(got, expected) <= 1e-5 * expected.abs().max().item()
