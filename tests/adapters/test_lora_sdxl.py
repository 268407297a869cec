"""LoRA on the SDXL preset equals diffusers' (fp32, <= 1e-4): both text encoders and kohya's LDM names."""

from __future__ import annotations

import numpy as np

from .conftest import TOLERANCE
from .lora_files import TEXT_TARGETS, UNET_TARGETS, diffusers_layout, kohya_layout, ldm_unet_path, random_pairs, save


def _parts(pair, seed: int, rank: int = 4, convs: bool = False) -> dict:
    return {
        "unet": random_pairs(pair.theirs.unet, UNET_TARGETS, rank, seed, convs=convs),
        "text_encoder": random_pairs(pair.theirs.text_encoder, TEXT_TARGETS, rank, seed + 100),
        "text_encoder_2": random_pairs(pair.theirs.text_encoder_2, TEXT_TARGETS, rank, seed + 200),
    }


def test_sdxl_diffusers_file_with_both_text_encoders(sdxl, tmp_path):
    base = sdxl.run_ours()
    path = save(diffusers_layout(_parts(sdxl, 0)), tmp_path / "xl.safetensors")
    sdxl.ours.load_lora_weights(path, adapter_name="xl")
    sdxl.theirs.load_lora_weights(str(path), adapter_name="xl")
    assert sorted(sdxl.ours.get_list_adapters()) == ["text_encoder", "text_encoder_2", "unet"]
    for pipe in (sdxl.ours, sdxl.theirs):
        pipe.set_adapters("xl", 0.5)
    ours, theirs = sdxl.both()
    assert np.abs(ours - base).max() > 1e-2
    assert np.abs(ours - theirs).max() <= TOLERANCE


def test_sdxl_kohya_file_with_ldm_block_names(sdxl, tmp_path):
    parts = _parts(sdxl, 1, rank=4, convs=True)
    parts["unet"] = {ldm_unet_path(p): w for p, w in parts["unet"].items()}
    state = kohya_layout(parts, alpha=2.0, sd15=False)
    assert any(k.startswith("lora_unet_input_blocks_4_1_") for k in state)
    assert any(k.startswith("lora_te2_") for k in state)
    path = save(state, tmp_path / "xl_kohya.safetensors")
    base = sdxl.run_ours()
    sdxl.ours.load_lora_weights(path, adapter_name="k")
    sdxl.theirs.load_lora_weights(str(path), adapter_name="k")
    ours, theirs = sdxl.both()
    assert np.abs(ours - base).max() > 1e-2
    assert np.abs(ours - theirs).max() <= TOLERANCE
