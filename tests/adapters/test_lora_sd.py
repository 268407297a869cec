"""LoRA on the SD 1.5 preset equals diffusers' load_lora_weights + set_adapters (fp32, <= 1e-4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffblocks.adapters import LoraFormatError

from .conftest import TOLERANCE, Pair
from .lora_files import TEXT_TARGETS, UNET_TARGETS, diffusers_layout, kohya_layout, random_pairs, save


def _parts(pair: Pair, seed: int, rank: int = 4, text: bool = True, convs: bool = False) -> dict:
    parts = {"unet": random_pairs(pair.theirs.unet, UNET_TARGETS, rank, seed, convs=convs)}
    if text:
        parts["text_encoder"] = random_pairs(pair.theirs.text_encoder, TEXT_TARGETS, rank, seed + 100)
    return parts


def _close(ours: np.ndarray, theirs: np.ndarray) -> float:
    assert ours.shape == theirs.shape
    err = float(np.abs(ours - theirs).max())
    assert err <= TOLERANCE, err
    return err


def test_diffusers_file_matches_diffusers(sd, tmp_path):
    base = sd.run_ours()
    path = save(diffusers_layout(_parts(sd, 0)), tmp_path / "lora" / "pytorch_lora_weights.safetensors")
    # A folder means its pytorch_lora_weights.safetensors.
    assert sd.ours.load_lora_weights(tmp_path / "lora", adapter_name="style") == "style"
    sd.theirs.load_lora_weights(str(path), adapter_name="style")
    sd.ours.set_adapters(["style"], adapter_weights=[0.7])
    sd.theirs.set_adapters(["style"], adapter_weights=[0.7])
    ours, theirs = sd.both()
    assert np.abs(ours - base).max() > 1e-2  # the LoRA does something
    _close(ours, theirs)
    assert sd.ours.get_active_adapters() == ["style"]


def test_text_encoder_only_lora_changes_the_prompt_encoding(sd, tmp_path):
    parts = {"text_encoder": random_pairs(sd.theirs.text_encoder, TEXT_TARGETS, 2, 7, scale=0.5)}
    path = save(diffusers_layout(parts), tmp_path / "te.safetensors")
    base = sd.run_ours()
    sd.ours.load_lora_weights(path, adapter_name="te")
    sd.theirs.load_lora_weights(str(path), adapter_name="te")
    ours, theirs = sd.both()
    assert np.abs(ours - base).max() > 1e-2
    _close(ours, theirs)
    assert sd.ours.get_list_adapters() == {"text_encoder": ["te"]}


def test_kohya_file_with_alpha_text_encoder_and_locon(sd, tmp_path):
    parts = _parts(sd, 1, rank=8, convs=True)
    assert any("conv1" in p for p in parts["unet"])  # LoCon: 3x3 convolutions in the resnets
    path = save(kohya_layout(parts, alpha=4.0), tmp_path / "kohya.safetensors")
    base = sd.run_ours()
    sd.ours.load_lora_weights(path, adapter_name="k")
    sd.theirs.load_lora_weights(str(path), adapter_name="k")
    ours, theirs = sd.both()
    assert np.abs(ours - base).max() > 1e-2
    _close(ours, theirs)


def test_two_adapters_mixed_with_weights(sd, tmp_path):
    a = save(diffusers_layout(_parts(sd, 2)), tmp_path / "a.safetensors")
    b = save(kohya_layout(_parts(sd, 3, rank=2), alpha=1.0), tmp_path / "b.safetensors")
    for pipe in (sd.ours, sd.theirs):
        pipe.load_lora_weights(str(a), adapter_name="a")
        pipe.load_lora_weights(str(b), adapter_name="b")
        pipe.set_adapters(["a", "b"], adapter_weights=[0.6, 0.3])
    mixed = _close(*sd.both())
    sd.ours.set_adapters(["a"], adapter_weights=[0.6])
    only_a = sd.run_ours()
    assert np.abs(only_a - sd.run_ours()).max() == 0
    sd.ours.set_adapters(["a", "b"], adapter_weights=[0.6, 0.3])
    assert np.abs(only_a - sd.run_ours()).max() > 1e-3
    assert mixed <= TOLERANCE


def test_fuse_and_unfuse(sd, tmp_path):
    path = save(diffusers_layout(_parts(sd, 4)), tmp_path / "f.safetensors")
    unet = sd.ours.components["unet"]
    before = {k: v.clone() for k, v in unet.state_dict().items() if "lora_" not in k}
    sd.ours.load_lora_weights(path, adapter_name="f")
    sd.theirs.load_lora_weights(str(path), adapter_name="f")
    sd.ours.set_adapters("f", 0.8)
    sd.theirs.set_adapters("f", 0.8)
    unfused = sd.run_ours()
    sd.ours.fuse_lora()
    fused = sd.run_ours()
    assert np.abs(fused - unfused).max() <= TOLERANCE
    _close(fused, sd.run_theirs())
    sd.ours.unfuse_lora()
    after = {k.replace(".base_layer", ""): v for k, v in unet.state_dict().items() if "lora_" not in k}
    assert max(float((after[k] - v).abs().max()) for k, v in before.items()) <= 1e-6
    assert np.abs(sd.run_ours() - unfused).max() <= TOLERANCE
    sd.ours.disable_lora()
    sd.ours.enable_lora()
    sd.ours.unload_lora_weights()
    restored = unet.state_dict()
    assert set(restored) == set(before)  # the plain layers are back
    assert max(float((restored[k] - v).abs().max()) for k, v in before.items()) <= 1e-6


def test_unknown_keys_are_listed(sd, tmp_path):
    sd_ = diffusers_layout(_parts(sd, 5, text=False))
    sd_["unet.down_blocks.9.attentions.0.to_q.lora_A.weight"] = torch.zeros(4, 32)
    sd_["unet.down_blocks.9.attentions.0.to_q.lora_B.weight"] = torch.zeros(32, 4)
    sd_["lora_te_nothing_here.lora_down.weight"] = torch.zeros(4, 32)
    path = save(sd_, tmp_path / "bad.safetensors")
    with pytest.raises(LoraFormatError) as err:
        sd.ours.load_lora_weights(path)
    assert "down_blocks.9.attentions.0.to_q" in str(err.value) and "nothing_here" in str(err.value)
    assert sd.ours.get_list_adapters() == {}  # nothing attached


def test_a_file_that_is_not_a_lora_says_what_it_is(sd, tmp_path):
    unet_file = save({k: v for k, v in list(sd.ours.components["unet"].state_dict().items())[:4]},
                     tmp_path / "unet.safetensors")
    with pytest.raises(LoraFormatError, match="full UNet state dict"):
        sd.ours.load_lora_weights(unet_file)
    emb = save({"emb_params": torch.zeros(1, 32)}, tmp_path / "emb.safetensors")
    with pytest.raises(LoraFormatError, match="textual-inversion"):
        sd.ours.load_lora_weights(emb)


def test_pickles_need_allow_pickle(sd, tmp_path):
    from diffblocks.adapters import AdapterFileError

    sd_ = diffusers_layout(_parts(sd, 6, text=False))
    torch.save(sd_, tmp_path / "lora.bin")
    with pytest.raises(AdapterFileError, match="allow_pickle=True"):
        sd.ours.load_lora_weights(tmp_path / "lora.bin")
    assert sd.ours.load_lora_weights(tmp_path / "lora.bin", allow_pickle=True) == "default_0"


def test_diffusers_metadata_alpha(sd, tmp_path):
    """A diffusers file trained with lora_alpha != r keeps the scale only in its safetensors metadata."""
    import json

    from safetensors.torch import save_file

    path = tmp_path / "meta.safetensors"
    config = {"r": 4, "lora_alpha": 8, "target_modules": list(UNET_TARGETS), "alpha_pattern": {}, "rank_pattern": {}}
    meta = {"lora_adapter_metadata": json.dumps({f"unet.{k}": v for k, v in config.items()})}
    state = diffusers_layout(_parts(sd, 8, text=False))
    save_file(state, str(path), metadata=meta)
    plain = save(state, tmp_path / "plain.safetensors")
    sd.ours.load_lora_weights(path, adapter_name="m")
    sd.theirs.load_lora_weights(str(path), adapter_name="m")
    _close(*sd.both())
    with_meta = sd.run_ours()
    sd.ours.unload_lora_weights()
    sd.ours.load_lora_weights(plain, adapter_name="p")
    sd.ours.set_adapters("p", 2.0)  # alpha 8 / rank 4: the metadata file equals the bare file at weight 2
    assert np.abs(sd.run_ours() - with_meta).max() <= TOLERANCE
    sd.ours.set_adapters("p", 1.0)
    assert np.abs(sd.run_ours() - with_meta).max() > 1e-3


def test_delete_one_adapter_keeps_the_other(sd, tmp_path):
    a = save(diffusers_layout(_parts(sd, 9, text=False)), tmp_path / "a.safetensors")
    b = save(diffusers_layout(_parts(sd, 10)), tmp_path / "b.safetensors")
    sd.ours.load_lora_weights(a, adapter_name="a")
    only_a = sd.run_ours()
    sd.ours.load_lora_weights(b, adapter_name="b")
    assert sd.ours.get_list_adapters() == {"unet": ["a", "b"], "text_encoder": ["b"]}
    sd.ours.delete_adapters("b")
    assert sd.ours.get_list_adapters() == {"unet": ["a"]} and sd.ours.get_active_adapters() == ["a"]
    assert np.abs(sd.run_ours() - only_a).max() == 0
    with pytest.raises(Exception, match="cannot be used"):
        sd.ours.load_lora_weights(b, adapter_name="train")  # would clash with torch.nn.Module.train
