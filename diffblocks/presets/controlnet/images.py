"""Control images: size defaults, preparation for the ControlNet / T2I-Adapter, canny edges.

Preparation follows diffusers' control image processor: PIL images become RGB and are resized with
Lanczos, arrays and tensors are resized with nearest; values stay in [0, 1] (no [-1, 1] mapping).
The batch is brought to the prompt batch (one image for all, or one per prompt, repeated for
``num_images_per_prompt``); the copy for the unconditional half is made per step by the ControlNet
block, which knows whether guidance runs.
"""

from __future__ import annotations

from typing import Any

import kornia
import PIL.Image
import torch

from ...blocks.function import block
from ...blocks.ports import Outputs
from ...blocks.types import ControlImage, PromptEmbeds
from ...models.multi_controlnet import controlnets_of
from ..stages.images import _first, _resize_pil, _resize_tensor, _to_tensor, image_size
from . import hints as _hints

__all__ = ["default_size_from_image", "prepare_control_image", "prepare_adapter_image", "canny_edges", "to_prompt_batch"]


@block("default_size_from_image", version=1)
def default_size_from_image(image: Any = None, height: int | None = None, width: int | None = None) -> Outputs(height=int | None, width=int | None):
    """``height`` / ``width`` default to the (first) control image's size, as in diffusers'
    ControlNet and T2I-Adapter text2img pipelines (the size checks come later, in ``check_inputs``)."""
    if image is None or (height is not None and width is not None):
        return {"height": height, "width": width}
    first = _first(image)
    size = image_size(first if not isinstance(first, (list, tuple)) else first[0], "image")
    return {"height": height or size[0], "width": width or size[1]}


def to_prompt_batch(x: torch.Tensor, rows: int, name: str) -> torch.Tensor:
    """One image for every row, or one per prompt repeated for each image of that prompt."""
    batch = x.shape[0]
    if batch == rows:
        return x
    if batch == 0 or rows % batch:
        raise ValueError(f"{name}: {batch} images for {rows} latents; give one image, or one per prompt")
    return x.repeat_interleave(rows // batch, dim=0)


def _control_tensor(image: Any, height: int, width: int, name: str) -> torch.Tensor:
    if isinstance(_first(image), PIL.Image.Image):
        image = _resize_pil(image, height, width, "RGB")
    return _resize_tensor(_to_tensor(image, name), height, width)


@block("prepare_control_image", version=1, components={"controlnet": _hints.CONTROLNET}, output_name="control_image")
def prepare_control_image(controlnet: Any, image: Any, height: int, width: int, prompt_embeds: PromptEmbeds) -> ControlImage:
    """The control image(s) as float tensors (B, 3, H, W) in [0, 1] at ``height`` x ``width``,
    batched to the prompt batch, in the ControlNet's dtype. Several ControlNets take a list with
    one image (or list of images) per net; the output is then a list too."""
    nets = controlnets_of(controlnet)
    multi = nets != [controlnet]  # a MultiControlNetModel or a list, even of one net
    images = list(image) if multi and isinstance(image, (list, tuple)) else [image]
    if len(images) != len(nets):
        raise ValueError(f"prepare_control_image.image: {len(nets)} ControlNets need {len(nets)} control images (a list), got {len(images)}")
    rows = prompt_embeds.shape[0]
    prepared = [
        to_prompt_batch(_control_tensor(img, height, width, "image"), rows, "prepare_control_image.image")
        .to(device=prompt_embeds.device, dtype=next(net.parameters()).dtype)
        for img, net in zip(images, nets)
    ]
    return prepared if multi else prepared[0]


@block("prepare_adapter_image", version=1, output_name="adapter_image")
def prepare_adapter_image(image: Any, height: int, width: int) -> ControlImage:
    """A T2I-Adapter's input (B, C, H, W) in [0, 1]: PIL images resized with Lanczos (their mode
    kept: a grayscale sketch stays one channel), tensors as they are (diffusers' rule)."""
    if isinstance(image, torch.Tensor) or (isinstance(image, (list, tuple)) and isinstance(_first(image), torch.Tensor)):
        return _to_tensor(image, "image")
    if isinstance(_first(image), PIL.Image.Image):
        items = list(image) if isinstance(image, (list, tuple)) else [image]
        image = [i.resize((width, height), resample=PIL.Image.LANCZOS) for i in items]
    return _resize_tensor(_to_tensor(image, "image"), height, width)


@block("canny_edges", version=1, config=["low_threshold", "high_threshold"], output_name="image")
def canny_edges(image: Any, low_threshold: float = 0.1, high_threshold: float = 0.2) -> ControlImage:
    """Canny edges of a photo (kornia's filter), white on black, as a (B, 3, H, W) tensor in
    [0, 1]: the control image of a canny ControlNet. Several images (a list) are done together.

    Args:
        low_threshold: weak-edge threshold on the gradient magnitude of the [0, 1] grayscale image.
        high_threshold: strong-edge threshold.
    """
    x = _to_tensor(image, "image")
    x = x if x.min() >= 0 else (x + 1) / 2  # a tensor in [-1, 1] (diffusers' convention) -> [0, 1]
    gray = kornia.color.rgb_to_grayscale(x[:, :3]) if x.shape[1] >= 3 else x[:, :1]
    _, edges = kornia.filters.canny(gray, low_threshold=low_threshold, high_threshold=high_threshold)
    return edges.expand(-1, 3, -1, -1).contiguous()
