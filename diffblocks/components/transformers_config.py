"""Bounds on a transformers text encoder's ``config.json``, checked before transformers builds it.

transformers allocates every layer a config asks for (a CLIP with ``num_hidden_layers`` 1e5
takes minutes and gigabytes before anything can fail), so the sizes are compared with
:mod:`diffblocks.limits` first; nested configs (``text_config``) are checked too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from diffblocks import limits
from diffblocks.components.spec import ComponentError
from diffblocks.fileio import FileReadError, read_text_bounded

__all__ = ["SIZE_KEYS", "check_transformers_config"]

#: config.json keys of text encoders -> (limit, minimum).
SIZE_KEYS: dict[str, tuple[str, int]] = {
    "num_hidden_layers": ("model_layers", 0),
    "num_layers": ("model_layers", 0),
    "num_decoder_layers": ("model_layers", 0),
    "hidden_size": ("model_channels", 1),
    "intermediate_size": ("model_channels", 1),
    "projection_dim": ("model_channels", 1),
    "d_model": ("model_channels", 1),
    "d_ff": ("model_channels", 1),
    "d_kv": ("model_channels", 1),
    "num_attention_heads": ("model_heads", 1),
    "num_heads": ("model_heads", 1),
    "num_key_value_heads": ("model_heads", 1),
    "vocab_size": ("vocab_size", 1),
    "max_position_embeddings": ("model_positions", 1),
    "relative_attention_num_buckets": ("model_positions", 1),
}


def _check(config: dict[str, Any], path: Path, who: str, prefix: str = "", depth: int = 0) -> None:
    for key, value in config.items():
        if isinstance(value, dict) and depth < 2:
            _check(value, path, who, f"{prefix}{key}.", depth + 1)
        elif key in SIZE_KEYS and value is not None:
            limit, minimum = SIZE_KEYS[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ComponentError(f"{who}: '{path}': {prefix}{key} = {value!r} must be an integer of at least {minimum}")
            try:
                limits.check(limit, value, key=f"{prefix}{key}")
            except limits.LimitError as err:
                raise ComponentError(f"{who}: '{path}': {err}") from None


def check_transformers_config(folder: Path, who: str) -> None:
    """Refuse (``ComponentError`` naming ``who``, the file and the key) a config.json whose sizes
    are out of type or above the limits. A folder without config.json is left to transformers."""
    path = folder / "config.json"
    if not path.is_file():
        return
    try:
        config = json.loads(read_text_bounded(path, what="config file"))
    except FileReadError as err:
        raise ComponentError(f"{who}: {err}") from None
    except RecursionError:
        raise ComponentError(f"{who}: '{path}' is nested too deeply") from None
    except ValueError as err:
        raise ComponentError(f"{who}: '{path}' is not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise ComponentError(f"{who}: '{path}' must hold a JSON object, got {type(config).__name__}")
    _check(config, path, who)
