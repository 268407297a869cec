"""Flux input checks: reject bad inputs before any model runs, resolve per-workflow defaults."""

from __future__ import annotations

from typing import Any

from ...blocks.errors import InputError
from ...limits import check_image_request
from ...blocks.function import block
from ..stages.images import OUTPUT_TYPES, vae_scale_factor
from ..stages.prompts import is_prompt as _is_prompt
from ...blocks.ports import Outputs
from ...blocks.types import PooledEmbeds, PromptEmbeds
from . import hints
from .text import MAX_SEQUENCE_LENGTH

__all__ = ["check_inputs_flux", "DEFAULT_SAMPLE_SIZE"]

#: Latent pixels per side by default (diffusers' FluxPipeline: 128, i.e. 1024 px with an 8x VAE).
DEFAULT_SAMPLE_SIZE = 128


@block(
    "check_inputs_flux", version=1, components={"vae": hints.VAE},
    config={"img2img_strength": 0.6, "default_guidance_scale": 3.5, "img2img_guidance_scale": 7.0},
)
def check_inputs_flux(
    vae: Any,
    prompt: str | list[str] | None = None,
    prompt_2: str | list[str] | None = None,
    prompt_embeds: PromptEmbeds | None = None,
    pooled_prompt_embeds: PooledEmbeds | None = None,
    negative_prompt: str | list[str] | None = None,
    negative_prompt_embeds: PromptEmbeds | None = None,
    negative_pooled_prompt_embeds: PooledEmbeds | None = None,
    image: Any = None,
    height: int | None = None,
    width: int | None = None,
    strength: float | None = None,
    guidance_scale: float | None = None,
    num_inference_steps: int = 28,
    max_sequence_length: int = MAX_SEQUENCE_LENGTH,
    output_type: str = "pil",
    img2img_strength: float = 0.6,
    default_guidance_scale: float = 3.5,
    img2img_guidance_scale: float = 7.0,
) -> Outputs(height=int, width=int, strength=float, guidance_scale=float):
    """Reject bad inputs before anything runs and resolve the workflow's defaults: sizes (default
    1024 px with Flux's VAE; img2img resizes the image to them), strength (text2img: 1, img2img:
    0.6) and the embedded guidance scale (text2img 3.5, img2img 7.0, as diffusers' pipelines).

    Args:
        img2img_strength: default strength with an image.
        default_guidance_scale: default guidance scale (text2img).
        img2img_guidance_scale: default guidance scale with an image.
    """
    if prompt_embeds is None and not _is_prompt(prompt):
        raise InputError(f"prompt is missing or not a string / list of strings (got {type(prompt).__name__})")
    for text_name, text in (("prompt", prompt), ("prompt_2", prompt_2)):
        if text is not None and prompt_embeds is not None:
            raise InputError(f"give {text_name} or prompt_embeds, not both")
    if negative_prompt is not None and negative_prompt_embeds is not None:
        raise InputError("give negative_prompt or negative_prompt_embeds, not both")
    for given, pooled, prefix in ((prompt_embeds, pooled_prompt_embeds, ""),
                                  (negative_prompt_embeds, negative_pooled_prompt_embeds, "negative_")):
        if (given is None) != (pooled is None):
            raise InputError(f"give {prefix}prompt_embeds and {prefix}pooled_prompt_embeds together "
                             "(T5 states and CLIP's pooled embedding of the same prompts)")
    if not 1 <= max_sequence_length <= MAX_SEQUENCE_LENGTH:
        raise InputError(f"max_sequence_length must be in [1, {MAX_SEQUENCE_LENGTH}], got {max_sequence_length}")
    if strength is not None and not 0.0 <= strength <= 1.0:
        raise InputError(f"strength must be in [0, 1], got {strength}")
    if num_inference_steps < 1:
        raise InputError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
    if output_type not in OUTPUT_TYPES:
        raise InputError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
    factor = vae_scale_factor(vae)
    height, width = height or DEFAULT_SAMPLE_SIZE * factor, width or DEFAULT_SAMPLE_SIZE * factor
    for name, value in (("height", height), ("width", width)):
        # Latents are packed in 2x2 patches, so each side must cover an even number of latent pixels.
        if value % (2 * factor):
            raise InputError(f"{name} must be a multiple of {2 * factor} (the VAE's scale factor x 2 for "
                             f"Flux's 2x2 latent patches), got {value}")
    check_image_request(height, width, num_inference_steps=num_inference_steps)
    if image is None:
        strength, default_scale = 1.0, default_guidance_scale
    else:
        strength, default_scale = (img2img_strength if strength is None else strength), img2img_guidance_scale
    scale = default_scale if guidance_scale is None else guidance_scale
    return {"height": int(height), "width": int(width), "strength": float(strength), "guidance_scale": float(scale)}
