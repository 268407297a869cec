"""The CLIP BPE tokenizer from the vocabulary bundled in ``diffblocks/assets/single_file``.

The merges file (OpenAI CLIP's ``bpe_simple_vocab_16e6.txt.gz``, MIT; see
``CLIP-VOCAB-LICENSE.txt``) defines the 49,408-token vocabulary: the 256 byte symbols, the same
with the end-of-word mark ``</w>``, one token per merge, and the two special tokens.
"""

from __future__ import annotations

import gzip
from functools import cache
from typing import Any

from diffblocks.models.single_file.detect import ASSETS

__all__ = ["clip_tokenizer", "VOCAB_FILE"]

VOCAB_FILE = ASSETS / "clip_bpe_simple_vocab_16e6.txt.gz"
MERGES = 49152 - 256 - 2  # CLIP uses the first 48,894 merges of the file


def _byte_symbols() -> list[str]:
    """GPT-2's printable stand-ins for the 256 byte values, in vocabulary order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return [chr(c) for c in printable] + [chr(256 + i) for i in range(len(others))]


@cache
def _vocab_and_merges() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    lines = gzip.decompress(VOCAB_FILE.read_bytes()).decode("utf-8").split("\n")
    merges: tuple[tuple[str, str], ...] = tuple((a, b) for a, b in (line.split() for line in lines[1 : MERGES + 1]))
    symbols = _byte_symbols()
    tokens: list[str] = [*symbols, *(s + "</w>" for s in symbols), *("".join(m) for m in merges), "<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def clip_tokenizer(pad_token: str = "<|endoftext|>", model_max_length: int = 77) -> Any:
    """CLIP's tokenizer (SD 1.x and SDXL's first encoder pad with ``<|endoftext|>``, OpenCLIP
    encoders with ``!``)::

        >>> clip_tokenizer()("a photo of a cat").input_ids
        [49406, 320, 1125, 539, 320, 2368, 49407]
    """
    from transformers import CLIPTokenizer

    vocab, merges = _vocab_and_merges()
    return CLIPTokenizer(
        # transformers hints merges as strings; the Rust backend wants the pairs themselves
        vocab=dict(vocab), merges=list(merges), model_max_length=model_max_length,  # type: ignore[arg-type]
        bos_token="<|startoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>", pad_token=pad_token,
    )
