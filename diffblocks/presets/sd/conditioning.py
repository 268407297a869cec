"""SDXL micro-conditioning: the "time ids" (original size, crop top-left, target size) that SDXL's
UNet embeds next to the pooled text embedding, and the block that batches both for guidance."""

from __future__ import annotations

import torch

from ...blocks.context import RunContext
from ...blocks.function import block
from ...blocks.ports import Outputs
from ...blocks.types import PooledEmbeds, PromptEmbeds, TimeIds
from ..stages.guiders import batch_for_guidance

__all__ = ["get_add_time_ids", "prepare_added_conditioning"]

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


@block("prepare_added_conditioning", version=1, outputs=Outputs(text_embeds=PooledEmbeds, time_ids=TimeIds))
def prepare_added_conditioning(
    pooled_prompt_embeds: PooledEmbeds,
    negative_pooled_prompt_embeds: PooledEmbeds | None,
    add_time_ids: TimeIds,
    ctx: RunContext,
    negative_add_time_ids: TimeIds | None = None,
    guidance_active: bool = False,
) -> dict:
    """SDXL's added conditioning for the UNet, batched [uncond, cond] like the prompt embeddings
    when the guider batched this step (``guidance_active``), else the conditional rows alone."""
    if not guidance_active:
        return {"text_embeds": pooled_prompt_embeds, "time_ids": add_time_ids}
    negative_ids = negative_add_time_ids if negative_add_time_ids is not None else add_time_ids
    return {
        "text_embeds": batch_for_guidance(ctx, "pooled", negative_pooled_prompt_embeds, pooled_prompt_embeds),
        "time_ids": batch_for_guidance(ctx, "time_ids", negative_ids, add_time_ids),
    }
