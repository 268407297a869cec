"""A tiny saved CLIP text encoder for the security tests (built from tiny_pipelines' config)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from diffblocks.components import ComponentSpec
from tests.components.tiny_pipelines import _clip_text_config


def save_tiny_clip(folder: Path, **config_changes: object) -> ComponentSpec:
    """Save a random tiny CLIPTextModel to ``folder`` (config keys changed as given) and return its spec."""
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    CLIPTextModel(_clip_text_config()).save_pretrained(folder)
    if config_changes:
        path = folder / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config_changes}))
    return ComponentSpec("text_encoder", ("transformers", "CLIPTextModel"), str(folder))
