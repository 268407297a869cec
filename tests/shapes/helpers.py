"""Shared helpers for the shapes tests: the training script and the model classes to load with."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from transformers import CLIPTextModel, CLIPTokenizer

from diffblocks.models import AutoencoderKL, UNet2DConditionModel
from diffblocks.schedulers import DDIMScheduler

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "diffblocks" / "assets" / "tiny-shapes"


def training_script() -> ModuleType:
    """Import examples/train_tiny_shapes.py as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("train_tiny_shapes", REPO / "examples" / "train_tiny_shapes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def load_components(folder: Path) -> dict[str, Any]:
    """Load a tiny-shapes folder in fp32 with our model classes and transformers' CLIP."""
    return {
        "unet": UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32),
        "vae": AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.float32),
        "text_encoder": CLIPTextModel.from_pretrained(folder / "text_encoder", dtype=torch.float32).eval(),
        "tokenizer": CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        "scheduler": DDIMScheduler.from_pretrained(folder / "scheduler"),
    }
