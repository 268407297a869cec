"""What the schedulers package offers, by name only: plain data, no torch.

This is the one place those names are written. The package builds `SCHEDULER_CLASSES` from
`SCHEDULER_NAMES`, `scheduler_from_name` reads `SAMPLER_NAMES` and `COMFYUI_ALIASES`, and the
component registry (`diffblocks.registry.components`) advertises `SCHEDULER_NAMES` as built-in
diffusers type hints. A test builds every name listed here with our own code.
"""

from __future__ import annotations

from typing import Any

# diffusers scheduler class names we implement (each is a class of the same name in this package).
SCHEDULER_NAMES: tuple[str, ...] = (
    "DDPMScheduler",
    "DDIMScheduler",
    "PNDMScheduler",
    "LMSDiscreteScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "HeunDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSDEScheduler",
    "UniPCMultistepScheduler",
    "FlowMatchEulerDiscreteScheduler",
)

_NO_KARRAS = {"use_karras_sigmas": False}
_KARRAS = {"use_karras_sigmas": True}
_DPM_2M = {"algorithm_type": "dpmsolver++", "solver_order": 2, "solver_type": "midpoint"}
_DPM_2M_SDE = {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "solver_type": "midpoint"}

# Sampler names users know from A1111 / ComfyUI -> (scheduler class name, config overrides).
# The overrides are applied on top of the model's own scheduler config, so a model's beta
# schedule, prediction type and spacing are kept while the sampler changes.
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
    "DPM++ SDE": ("DPMSolverSDEScheduler", _NO_KARRAS),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", _KARRAS),
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
    "dpmpp_sde": "DPM++ SDE",
    "dpmpp_sde_gpu": "DPM++ SDE",
    "uni_pc": "UniPC",
    "uni_pc_bh2": "UniPC",
}
