"""Build a scheduler from a sampler name users know from A1111 / ComfyUI ("DPM++ 2M Karras").

The names themselves are data in `catalog` (`SAMPLER_NAMES`, `COMFYUI_ALIASES`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from diffblocks.schedulers.base import Scheduler, scheduler_class
from diffblocks.schedulers.catalog import COMFYUI_ALIASES, SAMPLER_NAMES


def _key(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip()).lower()


_LOOKUP = {_key(n): n for n in SAMPLER_NAMES} | {_key(a): n for a, n in COMFYUI_ALIASES.items()}


def scheduler_from_name(
    name: str, base_config: Mapping[str, Any] | str | os.PathLike[str] | Scheduler | None = None
) -> Scheduler:
    """Build the scheduler a sampler name stands for (case-insensitive), on top of `base_config`
    (the model's scheduler config, another scheduler, or a path), e.g. "DPM++ 2M Karras"."""
    canonical = _LOOKUP.get(_key(name))
    if canonical is None:
        raise ValueError(f"unknown sampler name {name!r}; valid names: {', '.join(SAMPLER_NAMES)} (ComfyUI: {', '.join(COMFYUI_ALIASES)})")
    class_name, overrides = SAMPLER_NAMES[canonical]
    return scheduler_class(class_name).from_config(base_config, **overrides)
