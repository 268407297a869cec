"""SDXL micro-conditioning: the "time ids" (original size, crop top-left, target size) that SDXL's
UNet embeds next to the pooled text embedding."""

from __future__ import annotations

import torch

from .function import block
from .ports import Outputs
from .types import PromptEmbeds, TimeIds

__all__ = ["get_add_time_ids"]

Pair = tuple[int, int]


@block("get_add_time_ids", version=1)
def get_add_time_ids(
    prompt_embeds: PromptEmbeds,
    height: int,
    width: int,
    original_size: Pair | None = None,
    crops_coords_top_left: Pair = (0, 0),
    target_size: Pair | None = None,
    negative_original_size: Pair | None = None,
    negative_crops_coords_top_left: Pair | None = None,
    negative_target_size: Pair | None = None,
) -> Outputs(add_time_ids=TimeIds, negative_add_time_ids=TimeIds):
    """Time ids (B, 6) for the conditional and the unconditional rows of the batch.

    Sizes default to (height, width); the negative values default to the positive ones.

    Args:
        original_size: size of the training image the model should imitate, (height, width).
        crops_coords_top_left: crop offset the model should imitate, (top, left).
        target_size: size of the image being made, (height, width).
    """
    original = tuple(original_size or (height, width))
    target = tuple(target_size or (height, width))
    crop = tuple(crops_coords_top_left)
    negative = (
        tuple(negative_original_size or original)
        + tuple(negative_crops_coords_top_left if negative_crops_coords_top_left is not None else crop)
        + tuple(negative_target_size or target)
    )
    rows = prompt_embeds.shape[0]
    ids = torch.tensor([original + crop + target], dtype=prompt_embeds.dtype, device=prompt_embeds.device)
    neg = torch.tensor([negative], dtype=prompt_embeds.dtype, device=prompt_embeds.device)
    return {"add_time_ids": ids.repeat(rows, 1), "negative_add_time_ids": neg.repeat(rows, 1)}
