"""SD input checks: reject bad inputs before anything runs and resolve the defaults that depend on
the workflow and on the UNet (its sample size gives the default image size)."""

from __future__ import annotations

from typing import Any

from ...blocks.errors import InputError
from ...limits import check_image_request
from ...blocks.function import block
from ...blocks.ports import Outputs
from ...blocks.types import PromptEmbeds
from ..stages.images import OUTPUT_TYPES, image_size, vae_scale_factor
from ..stages.prompts import is_prompt
from . import hints as _hints

__all__ = ["check_inputs", "resolve_size"]


@block(
    "check_inputs", version=1,
    components={"unet": _hints.UNET, "vae": _hints.VAE},
    config=["img2img_strength", "inpaint_strength", "default_guidance_scale", "inpaint_guidance_scale"],
)
def check_inputs(
    unet: Any,
    vae: Any,
    prompt: str | list[str] | None = None,
    prompt_embeds: PromptEmbeds | None = None,
    image: Any = None,
    mask_image: Any = None,
    height: int | None = None,
    width: int | None = None,
    strength: float | None = None,
    guidance_scale: float | None = None,
    num_inference_steps: int = 50,
    output_type: str = "pil",
    img2img_strength: float = 0.8,
    inpaint_strength: float = 1.0,
    default_guidance_scale: float = 7.5,
    inpaint_guidance_scale: float = 7.5,
) -> Outputs(height=int, width=int, strength=float, guidance_scale=float):
    """Reject bad inputs before anything runs, and resolve the defaults that depend on the workflow.

    Sizes: given, else the image's size (img2img), else the UNet's sample size in pixels.
    Strength and guidance scale: given, else the workflow's default (text2img always runs the
    full schedule).

    Args:
        img2img_strength: default strength with an image.
        inpaint_strength: default strength with an image and a mask.
        default_guidance_scale: default guidance scale (text2img, img2img).
        inpaint_guidance_scale: default guidance scale with an image and a mask.
    """
    if prompt is not None and prompt_embeds is not None:
        raise InputError("give prompt or prompt_embeds, not both")
    if prompt_embeds is None and not is_prompt(prompt):
        raise InputError(f"prompt is missing or not a string / list of strings (got {type(prompt).__name__})")
    if mask_image is not None and image is None:
        raise InputError("mask_image was given without image: inpainting needs the image to repaint")
    if strength is not None and not 0.0 <= strength <= 1.0:
        raise InputError(f"strength must be in [0, 1], got {strength}")
    if num_inference_steps < 1:
        raise InputError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
    if output_type not in OUTPUT_TYPES:
        raise InputError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
    height, width = resolve_size(unet, vae, image if mask_image is None else None, height, width)
    check_image_request(height, width, num_inference_steps=num_inference_steps)
    inpaint = mask_image is not None
    if image is None:
        strength = 1.0
    elif strength is None:
        strength = inpaint_strength if inpaint else img2img_strength
    if guidance_scale is None:
        guidance_scale = inpaint_guidance_scale if inpaint else default_guidance_scale
    return {"height": height, "width": width, "strength": float(strength), "guidance_scale": float(guidance_scale)}


def resolve_size(unet: Any, vae: Any, image: Any, height: int | None, width: int | None) -> tuple[int, int]:
    """(height, width): given, else the img2img image's size, else the UNet's sample size in
    pixels; each must be a multiple of the VAE's scale factor (``ValueError`` naming the input)."""
    factor = vae_scale_factor(vae)
    if image is not None and (height is None or width is None):
        size = image_size(image)
        for name, value, given in (("height", size[0], height), ("width", size[1], width)):
            if given is None and value % factor:
                raise InputError(f"image {name} {value} is not a multiple of {factor} (the VAE's scale factor); resize the image or pass {name}")
        height, width = height or size[0], width or size[1]
    default = unet.config.sample_size * factor
    height, width = height or default, width or default
    for name, value in (("height", height), ("width", width)):
        if value % factor:
            raise InputError(f"{name} must be a multiple of {factor} (the VAE's scale factor), got {value}")
    return int(height), int(width)
