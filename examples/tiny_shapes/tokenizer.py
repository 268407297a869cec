"""A tiny CLIP BPE tokenizer whose vocabulary is the shapes captions' words.

CLIP's own vocabulary has 49,408 entries; an embedding table that size would dominate a
model of a few MB. This builds a CLIP-format tokenizer (the same byte-level BPE, the same
``</w>`` end-of-word marker, the same special tokens) from a few dozen words: the 256 byte
symbols with and without ``</w>`` keep every input encodable, and merges learnt here in
the ordinary BPE way turn each caption word into a single token.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from transformers import CLIPTokenizer

from tiny_shapes.dataset import caption_words

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
END_OF_WORD = "</w>"


def byte_symbols() -> list[str]:
    """The 256 printable symbols that byte-level BPE uses for the bytes 0..255, in byte order.

    Printable Latin-1 bytes stand for themselves; the others (control characters, space,
    a few gaps) are moved to code points from 256 upwards so that no symbol is whitespace.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping, extra = {}, 0
    for byte in range(256):
        if byte in keep:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return [mapping[byte] for byte in range(256)]


def learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Learn BPE merges until every word in ``words`` (ASCII) is one symbol.

    Each step merges the most frequent adjacent pair over the distinct words, ties broken
    alphabetically, so the result is deterministic.
    """
    pieces = {word: [*word[:-1], word[-1] + END_OF_WORD] for word in words}
    merges: list[tuple[str, str]] = []
    while any(len(symbols) > 1 for symbols in pieces.values()):
        counts = Counter(
            pair for symbols in pieces.values() for pair in zip(symbols, symbols[1:])
        )
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        for word, symbols in pieces.items():
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            pieces[word] = merged
    return merges


def build_vocab(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP-ordered vocabulary (bytes, bytes + ``</w>``, merges, BOS, EOS) and merges."""
    merges = learn_merges(words)
    symbols = byte_symbols()
    tokens = symbols + [s + END_OF_WORD for s in symbols] + [a + b for a, b in merges] + [BOS, EOS]
    return {token: index for index, token in enumerate(tokens)}, merges


def build_tokenizer(model_max_length: int = 16, words: list[str] | None = None) -> CLIPTokenizer:
    """A CLIPTokenizer for the shapes captions, padding to ``model_max_length`` tokens."""
    vocab, merges = build_vocab(words if words is not None else caption_words())
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def save_tokenizer(tokenizer: CLIPTokenizer, folder: str | Path) -> None:
    """Save ``tokenizer`` as transformers does, plus ``vocab.json``/``merges.txt``.

    The two classic files let older transformers releases (slow CLIP tokenizer) load the
    folder as well.
    """
    folder = Path(folder)
    tokenizer.save_pretrained(folder)
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    (folder / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
