"""Sampler names users know from A1111 / ComfyUI -> (scheduler class name, config overrides).

The overrides are applied on top of the model's own scheduler config (`base_config`), so a model's
beta schedule, prediction type and spacing are kept while the sampler changes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from .base import Scheduler

_NO_KARRAS = {"use_karras_sigmas": False}
_KARRAS = {"use_karras_sigmas": True}
_DPM_2M = {"algorithm_type": "dpmsolver++", "solver_order": 2, "solver_type": "midpoint"}
_DPM_2M_SDE = {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "solver_type": "midpoint"}

SAMPLER_NAMES: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("EulerDiscreteScheduler", _NO_KARRAS),
    "Euler Karras": ("EulerDiscreteScheduler", _KARRAS),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", _NO_KARRAS),
    "LMS": ("LMSDiscreteScheduler", _NO_KARRAS),
    "LMS Karras": ("LMSDiscreteScheduler", _KARRAS),
    "DDIM": ("DDIMScheduler", {}),
    "DDPM": ("DDPMScheduler", {}),
    "PNDM": ("PNDMScheduler", {}),
    "PLMS": ("PNDMScheduler", {"skip_prk_steps": True}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {**_DPM_2M, **_NO_KARRAS}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {**_DPM_2M, **_KARRAS}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {**_DPM_2M_SDE, **_NO_KARRAS}),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler", {**_DPM_2M_SDE, **_KARRAS}),
    "DPM++ 2M SDE Heun": ("DPMSolverMultistepScheduler", {**_DPM_2M_SDE, "solver_type": "heun", **_NO_KARRAS}),
    "DPM++ 2M SDE Heun Karras": ("DPMSolverMultistepScheduler", {**_DPM_2M_SDE, "solver_type": "heun", **_KARRAS}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "Flow Euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "FlowMatchEuler": ("FlowMatchEulerDiscreteScheduler", {}),
}

# ComfyUI sampler names (its KSampler "sampler_name"), mapped onto the entries above.
COMFYUI_ALIASES: dict[str, str] = {
    "euler": "Euler",
    "euler_ancestral": "Euler a",
    "heun": "Heun",
    "lms": "LMS",
    "ddim": "DDIM",
    "ddpm": "DDPM",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_gpu": "DPM++ 2M SDE",  # same sampler; ComfyUI only draws its noise on the GPU
    "uni_pc": "UniPC",
    "uni_pc_bh2": "UniPC",
}


def _key(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip()).lower()


_LOOKUP = {_key(n): n for n in SAMPLER_NAMES} | {_key(a): n for a, n in COMFYUI_ALIASES.items()}


def scheduler_from_name(name: str, base_config: Mapping[str, Any] | str | os.PathLike | Scheduler | None = None) -> Scheduler:
    """Build the scheduler a sampler name stands for (case-insensitive), on top of `base_config`
    (the model's scheduler config, another scheduler, or a path), e.g. "DPM++ 2M Karras"."""
    from . import SCHEDULER_CLASSES  # the package registers the classes after importing this module

    canonical = _LOOKUP.get(_key(name))
    if canonical is None:
        raise ValueError(f"unknown sampler name {name!r}; valid names: {', '.join(SAMPLER_NAMES)} (ComfyUI: {', '.join(COMFYUI_ALIASES)})")
    class_name, overrides = SAMPLER_NAMES[canonical]
    if class_name not in SCHEDULER_CLASSES:
        raise ValueError(f"sampler {canonical!r} needs {class_name}, which is not available in this build")
    return SCHEDULER_CLASSES[class_name].from_config(base_config, **overrides)
