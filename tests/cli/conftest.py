"""Files the CLI tests feed to ``diffblocks``: images, crafted PNGs, a FIFO."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from diffblocks.cli.replay import png_metadata_keys


def crafted_png(path: Path, graph: str | None = "{}", inputs: object = None, version: str = "0.1.0") -> Path:
    """A PNG whose diffblocks chunks hold exactly what a test says (an attacker's PNG)."""
    keys = png_metadata_keys()
    info = PngInfo()
    if graph is not None:
        info.add_text(keys["graph"], graph)
    info.add_text(keys["inputs"], inputs if isinstance(inputs, str) else json.dumps(inputs if inputs is not None else {"model": "diffblocks:tiny-shapes", "prompt": "x"}))
    info.add_text(keys["version"], version)
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


@pytest.fixture()
def init_png(tmp_path: Path) -> Path:
    path = tmp_path / "init.png"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(path)
    return path


@pytest.fixture()
def fifo(tmp_path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this OS")
    path = tmp_path / "pipe.png"
    os.mkfifo(path)
    return path
