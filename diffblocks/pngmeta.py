"""What a generated PNG records about how it was made: the graph that ran, the settings (inputs,
seed, model) and the diffblocks version, in PNG text chunks. ``diffblocks run --replay`` reads it
back. Writes are atomic (temporary sibling, then rename)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from diffblocks import __version__

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
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            image.save(handle, format="PNG", pnginfo=info)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
