"""Flux LoRAs at the transformer level: ours equals diffusers' FluxTransformer2DModel with the same
LoRA (fp32, <= 1e-4) for a diffusers-layout file, and the BFL and kohya layouts of the same
update load to the same result (diffusers reads neither layout for a tiny model: its kohya
converter hard-codes Flux-dev's 3072 width, and BFL ``diffusion_model.`` keys pass unconverted,
so those two are checked against the diffusers-layout file diffusers does load)."""

from __future__ import annotations

import pytest
import torch

from diffblocks.adapters import LoraFormatError
from diffblocks.components import ComponentsManager
from diffblocks.models.flux import FluxTransformer2DModel
from tests.models.tiny_flux_vae import FLUX_DEV_LIKE, flux_inputs

from .lora_files import save

TOLERANCE = 1e-4
D = 32  # the tiny model's width (2 heads x 16)
#: BFL layer -> the diffusers layers it covers (several: a fused layer split by output rows).
BFL = {
    "double_blocks.0.img_attn.qkv": ("transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k",
                                     "transformer_blocks.0.attn.to_v"),
    "double_blocks.0.txt_attn.qkv": ("transformer_blocks.0.attn.add_q_proj", "transformer_blocks.0.attn.add_k_proj",
                                     "transformer_blocks.0.attn.add_v_proj"),
    "double_blocks.0.img_attn.proj": ("transformer_blocks.0.attn.to_out.0",),
    "double_blocks.0.txt_mlp.0": ("transformer_blocks.0.ff_context.net.0.proj",),
    "double_blocks.0.img_mod.lin": ("transformer_blocks.0.norm1.linear",),
    "single_blocks.0.linear1": ("single_transformer_blocks.0.attn.to_q", "single_transformer_blocks.0.attn.to_k",
                                "single_transformer_blocks.0.attn.to_v", "single_transformer_blocks.0.proj_mlp"),
    "single_blocks.0.linear2": ("single_transformer_blocks.0.proj_out",),
    "single_blocks.0.modulation.lin": ("single_transformer_blocks.0.norm.linear",),
    "final_layer.adaLN_modulation.1": ("norm_out.linear",),
    "time_in.in_layer": ("time_text_embed.timestep_embedder.linear_1",),
    "guidance_in.out_layer": ("time_text_embed.guidance_embedder.linear_2",),
    "img_in": ("x_embedder",),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import diffusers

    torch.manual_seed(0)
    ref = diffusers.FluxTransformer2DModel(**FLUX_DEV_LIKE).eval()
    folder = tmp_path_factory.mktemp("flux-lora")
    ref.save_pretrained(folder)
    return ref, folder


def _bfl_pairs(ref: torch.nn.Module, rank: int = 4) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    mods = dict(ref.named_modules())
    out = {}
    for stem, targets in BFL.items():
        rows = sum(mods[t].out_features for t in targets)
        out[stem] = (torch.randn(rank, mods[targets[0]].in_features, generator=g) * 0.2,
                     torch.randn(rows, rank, generator=g) * 0.2)
    return out


def _as_diffusers(pairs, ref) -> dict[str, torch.Tensor]:
    mods = dict(ref.named_modules())
    sd = {}
    for stem, (down, up) in pairs.items():
        targets = BFL[stem]
        if stem == "final_layer.adaLN_modulation.1":  # BFL: (shift, scale); diffusers: (scale, shift)
            up = torch.cat(up.chunk(2)[::-1])
        for t, piece in zip(targets, up.split([mods[t].out_features for t in targets])):
            sd[f"transformer.{t}.lora_A.weight"] = down.clone()
            sd[f"transformer.{t}.lora_B.weight"] = piece.contiguous()
    return sd


def _ours(folder, path) -> torch.Tensor:
    cm = ComponentsManager(share=False)
    cm.set("transformer", FluxTransformer2DModel.from_pretrained(folder).eval())
    cm.load_lora_weights(path, adapter_name="x")
    return cm


@torch.no_grad()
def test_flux_lora_layouts_match_diffusers(models, tmp_path):
    ref, folder = models
    pairs = _bfl_pairs(ref)
    inputs = flux_inputs(FLUX_DEV_LIKE)
    plain = ref(**inputs).sample
    diff_file = save(_as_diffusers(pairs, ref), tmp_path / "diffusers.safetensors")
    bfl_file = save({f"diffusion_model.{s}.lora_{p}.weight": t for s, (a, b) in pairs.items()
                     for p, t in (("A", a), ("B", b))}, tmp_path / "bfl.safetensors")
    kohya = {}
    for s, (a, b) in pairs.items():
        stem = "lora_unet_" + s.replace(".", "_")
        kohya.update({f"{stem}.lora_down.weight": a, f"{stem}.lora_up.weight": b, f"{stem}.alpha": torch.tensor(2.0)})
    kohya_file = save(kohya, tmp_path / "kohya.safetensors")

    ref.load_lora_adapter(str(diff_file), prefix="transformer", adapter_name="x")
    try:
        ref.set_adapters(["x"], [0.8])
        expected = ref(**inputs).sample
        ref.set_adapters(["x"], [0.5])  # kohya: alpha 2 / rank 4
        expected_half = ref(**inputs).sample
    finally:
        ref.delete_adapters("x")
    assert (expected - plain).abs().max() > 1e-2
    for path in (diff_file, bfl_file):
        cm = _ours(folder, path)
        cm.set_adapters("x", 0.8)
        assert (cm["transformer"](**inputs).sample - expected).abs().max() <= TOLERANCE, path.name
    cm = _ours(folder, kohya_file)
    assert (cm["transformer"](**inputs).sample - expected_half).abs().max() <= TOLERANCE


def test_flux_unknown_bfl_key_is_named(models, tmp_path):
    _, folder = models
    bad = save({"diffusion_model.double_blocks.0.img_attn.nothing.lora_A.weight": torch.zeros(4, D),
                "diffusion_model.double_blocks.0.img_attn.nothing.lora_B.weight": torch.zeros(D, 4)},
               tmp_path / "bad.safetensors")
    with pytest.raises(LoraFormatError, match="img_attn.nothing"):
        _ours(folder, bad)
