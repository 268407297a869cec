"""Stable Diffusion 1.x and SDXL: CLIP prompt encoding, SDXL's time ids and added conditioning,
the UNet denoise loop, and the ``sd15`` / ``sdxl`` presets (text2img, img2img, inpaint)."""

from __future__ import annotations

from pathlib import Path

from .. import stages  # noqa: F401  (the shared stage blocks these presets use)
from ..family import Family
from . import conditioning, denoise, inpaint, inputs, text  # noqa: F401  (importing registers the blocks)
from .build import build_sd15, build_sdxl
from .hints import COMPONENT_HINTS

__all__ = ["FAMILY"]

FAMILY = Family(
    name="sd",
    description="Stable Diffusion 1.x and SDXL",
    folder=Path(__file__).parent,
    presets={"sd15": build_sd15, "sdxl": build_sdxl},
    pipeline_classes={
        "StableDiffusionPipeline": "sd15",
        "StableDiffusionImg2ImgPipeline": "sd15",
        "StableDiffusionInpaintPipeline": "sd15",
        "StableDiffusionXLPipeline": "sdxl",
        "StableDiffusionXLImg2ImgPipeline": "sdxl",
        "StableDiffusionXLInpaintPipeline": "sdxl",
    },
    workflows={"text2img": (), "img2img": ("image",), "inpaint": ("image", "mask_image")},
    component_hints=COMPONENT_HINTS,
)
