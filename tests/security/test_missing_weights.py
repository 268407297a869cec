"""Issue 21, item 5: a transformers text encoder whose checkpoint lacks weights is refused on
both load paths (transformers would initialise them at random and load silently)."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file, save_file

from diffblocks.components.loading import load_spec
from diffblocks.components import ComponentError
from tests.security.tiny import save_tiny_clip

EMBEDDING = "embeddings.token_embedding.weight"  # transformers 5 names (no text_model. prefix)


def _without_embedding(folder):
    spec = save_tiny_clip(folder)
    weights = folder / "model.safetensors"
    state = load_file(str(weights))
    assert EMBEDDING in state
    del state[EMBEDDING]
    save_file(state, str(weights), metadata={"format": "pt"})
    return spec


def test_the_complete_checkpoint_loads(tmp_path):
    spec = save_tiny_clip(tmp_path / "text_encoder")
    assert load_spec(spec).get_input_embeddings().weight.abs().sum() > 0


def test_fast_path_refuses_missing_keys(tmp_path):
    spec = _without_embedding(tmp_path / "text_encoder")
    with pytest.raises(ComponentError) as info:
        load_spec(spec)
    message = str(info.value)
    assert "component 'text_encoder'" in message
    assert "model.safetensors" in message and EMBEDDING in message


def test_transformers_path_refuses_missing_keys(tmp_path, monkeypatch):
    monkeypatch.setattr("diffblocks.components.loading.FAST_CLASSES", frozenset())  # force from_pretrained
    spec = _without_embedding(tmp_path / "text_encoder")
    with pytest.raises(ComponentError) as info:
        load_spec(spec)
    message = str(info.value)
    assert "component 'text_encoder'" in message and str(tmp_path / "text_encoder") in message
    assert EMBEDDING in message and "random weights" in message


def test_transformers_path_loads_a_complete_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr("diffblocks.components.loading.FAST_CLASSES", frozenset())
    spec = save_tiny_clip(tmp_path / "text_encoder")
    assert load_spec(spec).get_input_embeddings().weight.abs().sum() > 0
