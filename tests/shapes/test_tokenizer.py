"""The tiny CLIP BPE tokenizer: whole-word tokens, CLIP format, unknown text still encodes."""

from __future__ import annotations

from pathlib import Path

from transformers import CLIPTokenizer

from tiny_shapes.dataset import caption_words
from tiny_shapes.tokenizer import build_tokenizer, byte_symbols, save_tokenizer


def test_byte_symbols_are_distinct_and_printable() -> None:
    symbols = byte_symbols()
    assert len(set(symbols)) == 256 and all(not s.isspace() for s in symbols)
    assert symbols[ord("a")] == "a"


def test_every_caption_word_is_one_token() -> None:
    tokenizer = build_tokenizer()
    for word in caption_words():
        ids = tokenizer(word, add_special_tokens=False).input_ids
        assert tokenizer.convert_ids_to_tokens(ids) == [word + "</w>"]


def test_clip_format_and_padding() -> None:
    tokenizer = build_tokenizer(model_max_length=16)
    ids = tokenizer("a small red circle on the left, white background", padding="max_length",
                    max_length=16, truncation=True).input_ids
    assert len(ids) == 16 and ids[0] == tokenizer.bos_token_id
    assert ids[11:] == [tokenizer.eos_token_id] * 5  # 10 words + comma, then EOS padding
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # as SD 1.5's tokenizer
    unknown = tokenizer("a pink Elephant!").input_ids  # falls back to byte symbols
    assert unknown[0] == tokenizer.bos_token_id and len(unknown) > 4


def test_round_trip(tmp_path: Path) -> None:
    tokenizer = build_tokenizer()
    save_tokenizer(tokenizer, tmp_path)
    assert {"tokenizer.json", "vocab.json", "merges.txt"} <= {p.name for p in tmp_path.iterdir()}
    loaded = CLIPTokenizer.from_pretrained(tmp_path)
    text = "a large yellow triangle in the center, gray background"
    assert loaded(text).input_ids == tokenizer(text).input_ids
    assert loaded.model_max_length == tokenizer.model_max_length
