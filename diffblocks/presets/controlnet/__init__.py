"""ControlNet and T2I-Adapter for SD 1.x / SDXL graphs: blocks, ``with_controlnet`` /
``with_t2i_adapter`` (one call adds control to any SD-family graph), and presets for diffusers'
ControlNet and adapter pipelines (``sd15-controlnet``, ``sdxl-controlnet-img2img``, ``sd15-adapter`` …)."""

from __future__ import annotations

from pathlib import Path

from .. import sd  # noqa: F401  (the SD blocks these presets use)
from ..family import Family
from ..sd.hints import COMPONENT_HINTS as SD_HINTS
from . import adapter, control, images  # noqa: F401  (importing registers the blocks)
from .build import PRESETS
from .graphs import ADAPTER_INPUTS, CONTROLNET_INPUTS, with_controlnet, with_t2i_adapter
from .hints import CONTROLNET, T2I_ADAPTER

__all__ = ["FAMILY", "with_controlnet", "with_t2i_adapter", "CONTROLNET_INPUTS", "ADAPTER_INPUTS"]

FAMILY = Family(
    name="controlnet",
    description="ControlNet and T2I-Adapter on Stable Diffusion 1.x and SDXL",
    folder=Path(__file__).parent,
    presets=PRESETS,
    pipeline_classes={
        "StableDiffusionControlNetPipeline": "sd15-controlnet",
        "StableDiffusionControlNetImg2ImgPipeline": "sd15-controlnet-img2img",
        "StableDiffusionControlNetInpaintPipeline": "sd15-controlnet-inpaint",
        "StableDiffusionXLControlNetPipeline": "sdxl-controlnet",
        "StableDiffusionXLControlNetImg2ImgPipeline": "sdxl-controlnet-img2img",
        "StableDiffusionXLControlNetInpaintPipeline": "sdxl-controlnet-inpaint",
        "StableDiffusionAdapterPipeline": "sd15-adapter",
        "StableDiffusionXLAdapterPipeline": "sdxl-adapter",
    },
    component_hints={**SD_HINTS, "controlnet": CONTROLNET, "adapter": T2I_ADAPTER},
)
