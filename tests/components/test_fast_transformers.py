"""The meta-device fast path for transformers text encoders gives exactly what from_pretrained gives."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diffblocks.components.fast_transformers import load_text_encoder_fast


@pytest.mark.parametrize(
    ("kind", "sub", "cls_name", "dtype"),
    [
        ("sd", "text_encoder", "CLIPTextModel", None),
        ("sdxl", "text_encoder_2", "CLIPTextModelWithProjection", torch.bfloat16),
        ("flux", "text_encoder_2", "T5EncoderModel", None),
    ],
)
def test_fast_path_matches_from_pretrained(kind, sub, cls_name, dtype, request: pytest.FixtureRequest):
    import transformers

    folder: Path = request.getfixturevalue(f"tiny_{kind}_dir")
    cls = getattr(transformers, cls_name)
    fast = load_text_encoder_fast(cls, folder, sub, dtype, None)
    ref = cls.from_pretrained(folder, subfolder=sub, dtype=dtype).eval()
    assert fast is not None and not fast.training
    ref_state, fast_state = ref.state_dict(), fast.state_dict()
    assert ref_state.keys() == fast_state.keys()
    for key, value in ref_state.items():
        assert fast_state[key].dtype == value.dtype and torch.equal(fast_state[key], value), key
    ids = torch.tensor([[3, 5, 7, 9, 11, 1]])
    with torch.no_grad():
        a, b = fast(ids, output_hidden_states=True), ref(ids, output_hidden_states=True)
    torch.testing.assert_close(a.last_hidden_state, b.last_hidden_state, rtol=0, atol=0)
    if cls_name == "T5EncoderModel":
        assert fast.encoder.embed_tokens.weight is fast.shared.weight  # tied, as transformers ties them


def test_fast_path_declines_what_it_does_not_handle(tiny_flux_dir: Path, tmp_path: Path):
    import transformers

    # T5 keeps layers in fp32 under fp16: transformers' loader knows which, so we defer to it.
    for half in (torch.float16, torch.bfloat16):
        assert load_text_encoder_fast(transformers.T5EncoderModel, tiny_flux_dir, "text_encoder_2", half, None) is None
    assert load_text_encoder_fast(transformers.CLIPTextModel, tiny_flux_dir, "text_encoder", None, "fp16") is None  # no variant file
    assert load_text_encoder_fast(transformers.CLIPTokenizer, tiny_flux_dir, "tokenizer", None, None) is None
