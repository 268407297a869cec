"""Shared helpers for the shapes tests: where the shipped model lives, the training script."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


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
