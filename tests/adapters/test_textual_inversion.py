"""Textual inversion equals diffusers' load_textual_inversion (fp32 images, <= 1e-4): diffusers'
learned_embeds, A1111 .pt (opt-in pickle) and .safetensors, multi-vector tokens, SDXL pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffblocks.adapters import AdapterFileError

from .conftest import TOLERANCE, Pair
from .lora_files import save

PROMPT = "a photo of <shiny> cat"


def _vectors(n: int, dim: int, seed: int) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def _compare(pair: Pair) -> None:
    ours, theirs = pair.both(prompt=PROMPT)
    assert np.abs(ours - theirs).max() <= TOLERANCE


def test_diffusers_learned_embeds_multi_vector(tiny_sd_dir, tmp_path):
    pair = Pair(tiny_sd_dir, "StableDiffusionPipeline")
    before = pair.run_ours(prompt=PROMPT)
    save({"<shiny>": _vectors(2, 32, 0)}, tmp_path / "ti" / "learned_embeds.safetensors")
    assert pair.ours.load_textual_inversion(tmp_path / "ti") == ["<shiny>", "<shiny>_1"]
    pair.theirs.load_textual_inversion(str(tmp_path / "ti"))
    ours = pair.run_ours(prompt=PROMPT)
    assert np.abs(ours - before).max() > 1e-3  # the encode re-ran with the new token
    _compare(pair)


def test_a1111_pt_needs_allow_pickle_and_safetensors_takes_the_file_name(tiny_sd_dir, tmp_path):
    pair = Pair(tiny_sd_dir, "StableDiffusionPipeline")
    vectors = _vectors(1, 32, 1)
    torch.save({"string_to_param": {"*": vectors}, "name": "<shiny>", "step": 10}, tmp_path / "shiny.pt")
    with pytest.raises(AdapterFileError, match="allow_pickle=True"):
        pair.ours.load_textual_inversion(tmp_path / "shiny.pt")
    assert pair.ours.load_textual_inversion(tmp_path / "shiny.pt", allow_pickle=True) == ["<shiny>"]
    pair.theirs.load_textual_inversion(str(tmp_path / "shiny.pt"))
    _compare(pair)
    other = Pair(tiny_sd_dir, "StableDiffusionPipeline")
    path = save({"emb_params": vectors}, tmp_path / "<shiny>.safetensors")
    assert other.ours.load_textual_inversion(path) == ["<shiny>"]
    assert np.abs(other.run_ours(prompt=PROMPT) - pair.run_ours(prompt=PROMPT)).max() == 0


def test_sdxl_pair(tiny_sdxl_dir, tmp_path):
    pair = Pair(tiny_sdxl_dir, "StableDiffusionXLPipeline")
    state = {"clip_l": _vectors(2, 32, 2), "clip_g": _vectors(2, 32, 3)}
    path = save(state, tmp_path / "pair.safetensors")
    assert pair.ours.load_textual_inversion(path, token="<shiny>") == ["<shiny>", "<shiny>_1"]
    pair.theirs.load_textual_inversion(state["clip_l"], token="<shiny>", text_encoder=pair.theirs.text_encoder,
                                       tokenizer=pair.theirs.tokenizer)
    pair.theirs.load_textual_inversion(state["clip_g"], token="<shiny>", text_encoder=pair.theirs.text_encoder_2,
                                       tokenizer=pair.theirs.tokenizer_2)
    _compare(pair)


def test_embedding_errors(tiny_sd_dir, tmp_path):
    from diffblocks.adapters.textual_inversion import EmbeddingError

    pair = Pair(tiny_sd_dir, "StableDiffusionPipeline")
    with pytest.raises(EmbeddingError, match="width 16"):
        pair.ours.load_textual_inversion({"<x>": torch.zeros(16)})
    with pytest.raises(EmbeddingError, match="already in the tokenizer"):
        pair.ours.load_textual_inversion({"cat</w>": torch.zeros(32)})
