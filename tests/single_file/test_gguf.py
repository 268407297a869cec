"""GGUF: tiny Flux (BFL keys) and SD UNet (LDM keys) written with ``gguf.quants.quantize`` +
``GGUFWriter``, loaded by us with weights kept quantised, and for Flux by diffusers' GGUF loader.

Tolerances, stated:
  * ours vs the same model with weights replaced by their dequantised values (what a GGUF
    model computes): <= 1e-5 -- the only difference is where dequantisation happens;
  * ours vs diffusers' GGUF loader: <= 2e-3 -- diffusers dequantises Q8_0/Q4_0 blocks in fp16
    before casting (their ``d * x`` stays fp16), we in fp32;
  * ours vs the original fp32 model: the quantisation error itself, measured on this model at
    about 0.9% (Q8_0) and 13% (Q4_0) of the output's largest value; bounded at 3% and 30%.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diffblocks.models import FluxTransformer2DModel, UNet2DConditionModel
from diffblocks.models.single_file.gguf import GGUFLinear, QuantTensor, read_gguf, resident_bytes, save_gguf
from tests.single_file.reference import flux_width_from_file
from tests.single_file.test_models import _inputs, _run

QUANT_ERROR = {"Q8_0": 0.03, "Q4_0": 0.30}
#: packed bytes per 32 weights: fp16 scale + 32 int8 (Q8_0) or 16 bytes of nibbles (Q4_0)
BLOCK_BYTES = {"Q8_0": 34, "Q4_0": 18}


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.components.tiny_pipelines import flux_components

    folder = tmp_path_factory.mktemp("flux")
    flux_components(tokenizer_dir=folder / "tok")["transformer"].save_pretrained(folder / "transformer")
    return folder


def _dequantised_copy(model: torch.nn.Module, qtype: str) -> torch.nn.Module:
    """The fp32 model with every weight that GGUF quantises replaced by quantise -> dequantise."""
    import copy

    import gguf

    qt = gguf.GGMLQuantizationType[qtype]
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in clone.named_parameters():
            if p.ndim == 2 and p.shape[-1] % 32 == 0:
                values = gguf.quants.dequantize(gguf.quants.quantize(p.numpy(), qt), qt)
                p.copy_(torch.from_numpy(np.ascontiguousarray(values)).reshape(p.shape))
    return clone


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_flux_gguf_ours_and_diffusers(flux_dir: Path, tmp_path: Path, qtype: str) -> None:
    import diffusers

    original = FluxTransformer2DModel.from_pretrained(flux_dir, subfolder="transformer")
    file = save_gguf(original, tmp_path / f"flux-{qtype}.gguf", qtype)
    assert "double_blocks.0.img_attn.qkv.weight" in read_gguf(file)

    ours = FluxTransformer2DModel.from_single_file(file, config=flux_dir, subfolder="transformer")
    layers = [m for m in ours.modules() if isinstance(m, GGUFLinear)]
    assert len(layers) >= 20 and all(m.weight.dtype == torch.uint8 for m in layers)
    with flux_width_from_file():
        theirs = diffusers.FluxTransformer2DModel.from_single_file(
            str(file), config=str(flux_dir), subfolder="transformer",
            quantization_config=diffusers.GGUFQuantizationConfig(compute_dtype=torch.float32))

    inputs = _inputs("transformer", original)
    reference = _run("transformer", original, inputs)
    got = _run("transformer", ours, inputs)
    scale = reference.abs().max().item()
    assert (got - _run("transformer", _dequantised_copy(original, qtype), inputs)).abs().max().item() <= 1e-5
    assert (got - _run("transformer", theirs.eval(), inputs)).abs().max().item() <= 2e-3
    assert (got - reference).abs().max().item() <= QUANT_ERROR[qtype] * scale

    # resident bytes: quantised weights at their packed size, the rest fp32
    ckpt = read_gguf(file)
    quantised = sum(v.shape.numel() for k in ckpt if isinstance(v := ckpt[k], QuantTensor))
    plain = sum(ckpt[k].numel() for k in ckpt if not isinstance(ckpt[k], QuantTensor))
    expected = quantised * BLOCK_BYTES[qtype] // 32 + plain * 4
    assert resident_bytes(ours) == expected
    ratio = resident_bytes(original) / resident_bytes(ours)
    assert ratio >= {"Q8_0": 3.3, "Q4_0": 5.5}[qtype], ratio  # measured 3.51 / 6.13; ideal 3.76 / 7.11


def test_flux_gguf_bf16_compute(flux_dir: Path, tmp_path: Path) -> None:
    original = FluxTransformer2DModel.from_pretrained(flux_dir, subfolder="transformer")
    file = save_gguf(original, tmp_path / "flux.gguf", "Q8_0")
    ours = FluxTransformer2DModel.from_single_file(file, config=flux_dir, subfolder="transformer",
                                                   torch_dtype=torch.bfloat16)
    assert ours.x_embedder.weight.dtype == torch.bfloat16
    inputs = {k: v.to(torch.bfloat16) if v.is_floating_point() and k != "img_ids" and k != "txt_ids" else v
              for k, v in _inputs("transformer", original).items()}
    got = _run("transformer", ours, inputs).float()
    reference = _run("transformer", original, _inputs("transformer", original))
    assert (got - reference).abs().max().item() <= 0.1 * reference.abs().max().item()


def test_sd_unet_gguf(tiny_sd_dir: Path, tmp_path: Path) -> None:
    original = UNet2DConditionModel.from_pretrained(tiny_sd_dir, subfolder="unet")
    file = save_gguf(original, tmp_path / "unet.gguf", "Q8_0")
    assert "model.diffusion_model.input_blocks.0.0.weight" in read_gguf(file)
    ours = UNet2DConditionModel.from_single_file(file, config=tiny_sd_dir, subfolder="unet")
    assert any(isinstance(m, GGUFLinear) for m in ours.modules())
    inputs = _inputs("unet", original)
    got = _run("unet", ours, inputs)
    assert (got - _run("unet", _dequantised_copy(original, "Q8_0"), inputs)).abs().max().item() <= 1e-5
    assert resident_bytes(ours) < resident_bytes(original)


def test_k_quants_and_others_dequantise_through_gguf() -> None:
    """Types without a torch fast path go through gguf.quants.dequantize (here Q5_1 and Q4_1)."""
    import gguf

    from diffblocks.models.single_file.gguf import dequantize

    w = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    for name in ("Q5_1", "Q4_1", "Q5_0"):
        qt = gguf.GGMLQuantizationType[name]
        packed = torch.from_numpy(gguf.quants.quantize(w.numpy(), qt))
        values = dequantize(packed, qt, w.shape)
        assert (values - w).abs().max().item() < 0.2, name


def test_k_quant_layers_match_diffusers_dequantisation() -> None:
    """K-quants cannot be written by ``gguf.quants.quantize``; random blocks (with sane fp16
    scales) are dequantised by us (``gguf.quants.dequantize``) and by diffusers' torch kernels,
    and a `GGUFLinear` over them computes F.linear with those values."""
    import gguf
    from diffusers.quantizers.gguf.utils import GGUFParameter, dequantize_gguf_tensor

    gen = torch.Generator().manual_seed(0)
    scales_at = {"Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}
    for name, offsets in scales_at.items():
        qt = gguf.GGMLQuantizationType[name]
        block, size = gguf.GGML_QUANT_SIZES[qt]
        rows, cols = 3, 2 * block
        data = torch.randint(0, 256, (rows, cols // block, size), generator=gen, dtype=torch.uint8)
        for at in offsets:  # fp16 scales in [0.01, 0.02): random bytes would give inf / nan
            scale = (torch.rand(rows, cols // block, generator=gen) * 0.01 + 0.01).half()
            data[:, :, at:at + 2] = scale.view(torch.uint8).reshape(rows, cols // block, 2)
        data = data.reshape(rows, -1)
        ours = QuantTensor(data, qt, (rows, cols)).dequantize()
        theirs = dequantize_gguf_tensor(GGUFParameter(data, quant_type=qt)).float()
        assert torch.isfinite(ours).all() and (ours - theirs).abs().max().item() <= 1e-2 * ours.abs().max().item(), name
        layer = GGUFLinear(QuantTensor(data, qt, (rows, cols)), torch.zeros(rows), torch.float32)
        x = torch.randn(2, cols, generator=gen)
        assert torch.allclose(layer(x), x @ ours.T, atol=1e-4, rtol=1e-4), name
