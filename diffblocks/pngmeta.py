"""What a generated PNG records about how it was made: the graph that ran, the settings (inputs,
seed, model) and the diffblocks version, in PNG text chunks. ``diffblocks run --replay`` reads it
back. Writes are atomic (temporary sibling, then rename)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from diffblocks import __version__
from diffblocks.fileio import atomic_write_bytes

__all__ = ["PNG_KEYS", "save_png"]

#: Text-chunk keys: graph JSON (compressed), settings JSON, version.
PNG_KEYS = {"graph": "diffblocks:graph", "inputs": "diffblocks:inputs", "version": "diffblocks:version"}


def save_png(image: Any, path: str | os.PathLike[str], graph_json: str, settings: Mapping[str, Any]) -> Path:
    """Write a PIL image with its recipe; the file appears whole or not at all."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(PNG_KEYS["graph"], graph_json, zip=True)
    info.add_text(PNG_KEYS["inputs"], json.dumps(dict(settings), sort_keys=True))
    info.add_text(PNG_KEYS["version"], __version__)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return atomic_write_bytes(path, buffer.getvalue())
