"""Textual-inversion embeddings: new tokens whose input embeddings were learned.

File layouts read here:

* diffusers ``learned_embeds.safetensors`` / ``.bin``: one key, the token, -> ``[dim]`` or ``[n, dim]``;
* A1111 ``.pt`` (``{"string_to_param": {"*": [n, dim]}, "name": token}``, pickles need
  ``allow_pickle=True`` and load with ``weights_only=True``) and ``.safetensors``
  (``{"emb_params": [n, dim]}``; the token is the file name, as A1111 uses it);
* SDXL pairs ``{"clip_l": [n, 768], "clip_g": [n, 1280]}``: one part per text encoder.

An embedding of ``n > 1`` vectors becomes the tokens ``tok``, ``tok_1`` ... ``tok_{n-1}``, and
the tokenizer writes ``tok`` in a prompt as all of them before tokenizing (what diffusers'
pipelines do in ``maybe_convert_prompt``), so any graph's text encoder block sees them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from diffblocks.adapters.revision import publish_revision

__all__ = ["EmbeddingError", "PromptExpansion", "add_embedding", "embeddings_in"]

_EMBEDDINGS = "_diffblocks_embeddings"


class EmbeddingError(ValueError):
    """A textual-inversion file or token that cannot be used."""


def embeddings_in(tensors: Mapping[str, Any], path: str, token: str | None) -> dict[str, tuple[str, torch.Tensor]]:
    """``{part: (token, [n, dim] tensor)}`` where part is "clip_l", "clip_g" or "" (a single encoder)."""
    stem = Path(path).stem if path != "<state dict>" else None
    if "clip_l" in tensors or "clip_g" in tensors:
        name = token or stem
        if name is None:
            raise EmbeddingError(f"{path}: an SDXL embedding pair needs token=...")
        return {part: (name, _matrix(tensors[part], path)) for part in ("clip_l", "clip_g") if part in tensors}
    if "string_to_param" in tensors:
        params = tensors["string_to_param"]
        if not isinstance(params, Mapping) or "*" not in params:
            raise EmbeddingError(f"{path}: an A1111 embedding whose string_to_param has no '*' entry")
        return {"": (token or str(tensors.get("name") or stem), _matrix(params["*"], path))}
    if "emb_params" in tensors:
        if token is None and stem is None:
            raise EmbeddingError(f"{path}: an A1111 embedding given as a state dict needs token=...")
        return {"": (token or str(stem), _matrix(tensors["emb_params"], path))}
    if len(tensors) == 1:
        (key, value), = tensors.items()
        return {"": (token or key, _matrix(value, path))}
    raise EmbeddingError(f"{path}: not a textual-inversion embedding (keys {sorted(tensors)[:5]}); expected one "
                         "token key, 'string_to_param', 'emb_params' or 'clip_l'/'clip_g'")


def _matrix(value: Any, path: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.dim() not in (1, 2):
        raise EmbeddingError(f"{path}: an embedding must be a [dim] or [n, dim] tensor, got {getattr(value, 'shape', value)!r}")
    return value.detach().reshape(-1, value.shape[-1])


class PromptExpansion:
    """Mixed into a tokenizer's class: writes a multi-vector token as its ``n`` tokens."""

    _diffblocks_vectors: dict[str, list[str]]

    def expand_prompt(self, text: str) -> str:
        for token, parts in self._diffblocks_vectors.items():
            if token in text:
                text = text.replace(token, " ".join(parts))
        return text

    def __call__(self, text: Any = None, *args: Any, **kwargs: Any) -> Any:
        if isinstance(text, str):
            text = self.expand_prompt(text)
        elif isinstance(text, Sequence) and all(isinstance(t, str) for t in text):
            text = [self.expand_prompt(t) for t in text]
        return super().__call__(text, *args, **kwargs)  # type: ignore[misc]


def _with_expansion(tokenizer: Any) -> Any:
    if not isinstance(tokenizer, PromptExpansion):
        cls = type(tokenizer)
        # A subclass made once per tokenizer class: isinstance checks and save_pretrained still hold.
        tokenizer.__class__ = type(cls.__name__, (PromptExpansion, cls), {"__module__": cls.__module__})
        tokenizer._diffblocks_vectors = {}
    return tokenizer


def add_embedding(text_encoder: torch.nn.Module, tokenizer: Any, token: str, vectors: torch.Tensor, *,
                  content_id: str) -> list[str]:
    """Add ``token`` (and ``token_1`` ... for more vectors) to ``tokenizer`` with ``vectors`` as
    their input embeddings in ``text_encoder``. Returns the tokens added."""
    embedding = text_encoder.get_input_embeddings()
    if vectors.shape[-1] != embedding.weight.shape[-1]:
        raise EmbeddingError(f"embedding {token!r} has width {vectors.shape[-1]}, the text encoder "
                             f"{type(text_encoder).__name__} takes {embedding.weight.shape[-1]}")
    tokens = [token] + [f"{token}_{i}" for i in range(1, vectors.shape[0])]
    vocab = tokenizer.get_vocab()
    if taken := [t for t in tokens if t in vocab]:
        raise EmbeddingError(f"token(s) {taken} already in the tokenizer's vocabulary; pass another token=...")
    tokenizer.add_tokens(tokens)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    if max(ids) >= embedding.weight.shape[0]:
        text_encoder.resize_token_embeddings(max(ids) + 1)
        embedding = text_encoder.get_input_embeddings()
    with torch.no_grad():
        embedding.weight[ids] = vectors.to(embedding.weight)
    if len(tokens) > 1:
        _with_expansion(tokenizer)._diffblocks_vectors[token] = tokens
    added = text_encoder.__dict__.get(_EMBEDDINGS) or ()
    text_encoder.__dict__[_EMBEDDINGS] = (*added, (token, len(tokens), content_id))
    publish_revision(text_encoder)
    return tokens
