"""Images in and out: input checks and sizes, image / mask pre-processing, post-processing.

Accepted images (like diffusers' image processor): a PIL image or a list of them; a NumPy array
(H, W, C) or (B, H, W, C) in [0, 1]; a tensor (C, H, W) or (B, C, H, W) in [0, 1] (a tensor
already in [-1, 1] is taken as is). Masks are the same in one channel (or RGB PIL, made
grayscale), binarised at 0.5: 1 marks the region to repaint.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import PIL.Image
import torch

from ..limits import check_image_request
from . import _hints
from .function import block
from .ports import Outputs
from .types import Images, Mask, PromptEmbeds

__all__ = [
    "check_inputs", "preprocess_image", "preprocess_mask", "postprocess_images",
    "image_size", "resolve_size", "vae_scale_factor",
]

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


def vae_scale_factor(vae: Any) -> int:
    """Pixels per latent along each side: 2 ** (number of VAE resolution levels - 1)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def _first(image: Any) -> Any:
    return image[0] if isinstance(image, (list, tuple)) and image else image


def image_size(image: Any, name: str = "image") -> tuple[int, int]:
    """(height, width) of a PIL image / array / tensor (or of the first of a list)."""
    first = _first(image)
    if isinstance(first, PIL.Image.Image):
        return first.height, first.width
    if isinstance(first, np.ndarray):
        return tuple(first.shape[1:3]) if first.ndim == 4 else tuple(first.shape[:2])
    if isinstance(first, torch.Tensor):
        return int(first.shape[-2]), int(first.shape[-1])
    raise TypeError(f"{name} must be a PIL image, a NumPy array or a torch tensor (or a list of them), got {type(first).__name__}")


@block(
    "check_inputs", version=1,
    components={"unet": _hints.UNET, "vae": _hints.VAE},
    config={"img2img_strength": 0.8, "inpaint_strength": 1.0, "default_guidance_scale": 7.5, "inpaint_guidance_scale": 7.5},
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
        raise ValueError("give prompt or prompt_embeds, not both")
    if prompt_embeds is None and not _is_prompt(prompt):
        raise ValueError(f"prompt is missing or not a string / list of strings (got {type(prompt).__name__})")
    if mask_image is not None and image is None:
        raise ValueError("mask_image was given without image: inpainting needs the image to repaint")
    if strength is not None and not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
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


def _is_prompt(prompt: Any) -> bool:
    if isinstance(prompt, str):
        return True
    return isinstance(prompt, (list, tuple)) and bool(prompt) and all(isinstance(p, str) for p in prompt)


def resolve_size(unet: Any, vae: Any, image: Any, height: int | None, width: int | None) -> tuple[int, int]:
    """(height, width): given, else the img2img image's size, else the UNet's sample size in
    pixels; each must be a multiple of the VAE's scale factor (``ValueError`` naming the input)."""
    factor = vae_scale_factor(vae)
    if image is not None and (height is None or width is None):
        size = image_size(image)
        for name, value, given in (("height", size[0], height), ("width", size[1], width)):
            if given is None and value % factor:
                raise ValueError(f"image {name} {value} is not a multiple of {factor} (the VAE's scale factor); resize the image or pass {name}")
        height, width = height or size[0], width or size[1]
    default = unet.config.sample_size * factor
    height, width = height or default, width or default
    for name, value in (("height", height), ("width", width)):
        if value % factor:
            raise ValueError(f"{name} must be a multiple of {factor} (the VAE's scale factor), got {value}")
    return int(height), int(width)


def _to_tensor(image: Any, name: str) -> torch.Tensor:
    """Any accepted image input -> float tensor (B, C, H, W), values as given."""
    items = list(image) if isinstance(image, (list, tuple)) else [image]
    if isinstance(items[0], PIL.Image.Image):
        arrays = [np.asarray(i, dtype=np.float32) / 255.0 for i in items]
        return torch.from_numpy(np.stack([a if a.ndim == 3 else a[..., None] for a in arrays])).permute(0, 3, 1, 2)
    if isinstance(items[0], np.ndarray):
        arr = np.concatenate(items) if items[0].ndim == 4 else np.stack(items)
        arr = arr if arr.ndim == 4 else arr[..., None]  # (B, H, W) -> (B, H, W, 1)
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(0, 3, 1, 2)
    if isinstance(items[0], torch.Tensor):
        x = torch.cat(items) if items[0].ndim == 4 else torch.stack(items)
        return x.float()
    raise TypeError(f"{name} must be a PIL image, a NumPy array or a torch tensor (or a list of them), got {type(items[0]).__name__}")


def _resize_pil(image: Any, height: int, width: int, mode: str) -> list[PIL.Image.Image]:
    items = list(image) if isinstance(image, (list, tuple)) else [image]
    return [i.convert(mode).resize((width, height), resample=PIL.Image.LANCZOS) for i in items]


def _resize_tensor(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if tuple(x.shape[-2:]) == (height, width):
        return x
    return torch.nn.functional.interpolate(x, size=(height, width))


@block("preprocess_image", version=1, output_name="init_image")
def preprocess_image(height: int, width: int, image: Any = None) -> Images | None:
    """An input image as a float32 tensor (B, 3, H, W) in [-1, 1] at ``height`` x ``width``
    (PIL images are resized with Lanczos, arrays and tensors with nearest). None passes through."""
    if image is None:
        return None
    if isinstance(_first(image), PIL.Image.Image):
        image = _resize_pil(image, height, width, "RGB")
    x = _resize_tensor(_to_tensor(image, "image"), height, width)
    # Tensors already in [-1, 1] are accepted as they are (diffusers' rule).
    return x if x.min() < 0 else x * 2.0 - 1.0


@block("preprocess_mask", version=1, output_name="mask_condition")
def preprocess_mask(height: int, width: int, mask_image: Any = None) -> Mask | None:
    """An inpainting mask as a float32 tensor (B, 1, H, W) of 0 / 1 (1: repaint). None passes through."""
    if mask_image is None:
        return None
    if isinstance(_first(mask_image), PIL.Image.Image):
        mask_image = _resize_pil(mask_image, height, width, "L")
    elif isinstance(mask_image, torch.Tensor) and mask_image.ndim == 3:
        mask_image = mask_image.unsqueeze(1)  # (B, H, W) or (1, H, W) -> one channel
    elif isinstance(mask_image, torch.Tensor) and mask_image.ndim == 2:
        mask_image = mask_image[None, None]
    elif isinstance(mask_image, np.ndarray) and mask_image.ndim == 3 and mask_image.shape[-1] == 1:
        mask_image = mask_image[None]
    elif isinstance(mask_image, np.ndarray) and mask_image.ndim == 2:
        mask_image = mask_image[None, ..., None]
    x = _resize_tensor(_to_tensor(mask_image, "mask_image"), height, width)
    return (x >= 0.5).to(torch.float32)


@block("postprocess_images", version=1)
def postprocess_images(images: Images, output_type: str = "pil") -> Images:
    """Decoded images in [-1, 1] -> ``output_type``: "pil" (list of PIL images), "np" (float
    array (B, H, W, C) in [0, 1]), "pt" (tensor (B, C, H, W) in [0, 1]); "latent" passes through."""
    if output_type == "latent":
        return images
    images = (images / 2 + 0.5).clamp(0, 1)
    if output_type == "pt":
        return images
    array = images.cpu().permute(0, 2, 3, 1).float().numpy()
    if output_type == "np":
        return array
    pixels = (array * 255).round().astype("uint8")
    return [PIL.Image.fromarray(p[..., 0] if p.shape[-1] == 1 else p) for p in pixels]
