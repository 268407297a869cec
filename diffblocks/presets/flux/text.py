"""Flux prompt encoding: CLIP's pooled embedding plus T5's per-token states.

Flux conditions on two encoders: the pooled output of CLIP (one vector per prompt, into the
timestep embedding) and the last hidden states of T5 (the text tokens of the joint attention).
``prompt`` goes to CLIP, ``prompt_2`` (default: ``prompt``) to T5. All text tokens sit at
position (0, 0, 0): ``text_ids`` is zeros.
"""

from __future__ import annotations

from typing import Any

import torch

from ...limits import check_image_request
from ...blocks.function import block
from ...blocks.ports import Outputs
from ..stages.prompts import as_prompt_list
from ...blocks.types import PooledEmbeds, PromptEmbeds, TextIds
from . import hints

__all__ = ["encode_prompt_flux", "MAX_SEQUENCE_LENGTH"]

#: T5's limit in Flux: the transformer was trained with at most 512 text tokens.
MAX_SEQUENCE_LENGTH = 512


def _ids(tokenizer: Any, prompts: list[str], length: int, device: torch.device) -> torch.Tensor:
    tokens = tokenizer(prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
    return tokens.input_ids.to(device)


def _encode(
    text_encoder: Any, tokenizer: Any, text_encoder_2: Any, tokenizer_2: Any,
    prompts: list[str], prompts_2: list[str], max_sequence_length: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(T5 states (B, L, D), CLIP pooled (B, P)) for one batch of prompts."""
    clip_device = next(text_encoder.parameters()).device
    pooled = text_encoder(_ids(tokenizer, prompts, tokenizer.model_max_length, clip_device), output_hidden_states=False)
    t5_device = next(text_encoder_2.parameters()).device
    states = text_encoder_2(_ids(tokenizer_2, prompts_2, max_sequence_length, t5_device), output_hidden_states=False)[0]
    return states.to(text_encoder_2.dtype), pooled.pooler_output.to(text_encoder.dtype)


FLUX_TEXT = Outputs(
    prompt_embeds=PromptEmbeds, pooled_prompt_embeds=PooledEmbeds, text_ids=TextIds,
    negative_prompt_embeds=PromptEmbeds | None, negative_pooled_prompt_embeds=PooledEmbeds | None,
)


@block(
    "encode_prompt_flux", version=1, outputs=FLUX_TEXT,
    components={
        "text_encoder": hints.TEXT_ENCODER, "tokenizer": hints.TOKENIZER,
        "text_encoder_2": hints.TEXT_ENCODER_2, "tokenizer_2": hints.TOKENIZER_2,
    },
)
def encode_prompt_flux(
    text_encoder: Any,
    tokenizer: Any,
    text_encoder_2: Any,
    tokenizer_2: Any,
    prompt: str | list[str] | None = None,
    prompt_2: str | list[str] | None = None,
    negative_prompt: str | list[str] | None = None,
    negative_prompt_2: str | list[str] | None = None,
    prompt_embeds: PromptEmbeds | None = None,
    pooled_prompt_embeds: PooledEmbeds | None = None,
    negative_prompt_embeds: PromptEmbeds | None = None,
    negative_pooled_prompt_embeds: PooledEmbeds | None = None,
    num_images_per_prompt: int = 1,
    max_sequence_length: int = MAX_SEQUENCE_LENGTH,
    true_cfg_scale: float = 1.0,
) -> dict:
    """Encode prompts with CLIP (pooled) and T5 (per token), repeated ``num_images_per_prompt``
    times per prompt (rows p0, p0, p1, p1). Negative prompts are encoded only for true CFG
    (``true_cfg_scale`` > 1 and a negative given), else the negative outputs are None.
    Embeddings given as inputs are used instead of encoding (per-token and pooled together).

    Args:
        prompt_2: prompt for T5 (default: ``prompt``).
        negative_prompt_2: negative prompt for T5 (default: ``negative_prompt``).
        max_sequence_length: T5 tokens per prompt (padded or truncated to it; at most 512).
        true_cfg_scale: true classifier-free guidance scale; > 1 with a negative prompt enables it.
    """
    encoders = (text_encoder, tokenizer, text_encoder_2, tokenizer_2)
    n = num_images_per_prompt

    def embeds_for(texts: Any, texts_2: Any, given: Any, given_pooled: Any, name: str, batch: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        if given is not None:
            return given.to(text_encoder_2.dtype), given_pooled.to(text_encoder.dtype)
        prompts = as_prompt_list(texts, name, batch)
        prompts_2 = as_prompt_list(texts_2 if texts_2 is not None else texts, f"{name}_2", len(prompts))
        return _encode(*encoders, prompts, prompts_2, max_sequence_length)

    embeds, pooled = embeds_for(prompt, prompt_2, prompt_embeds, pooled_prompt_embeds, "prompt", None)
    negative = negative_pooled = None
    if true_cfg_scale > 1 and (negative_prompt is not None or negative_prompt_embeds is not None):
        negative, negative_pooled = embeds_for(
            negative_prompt, negative_prompt_2, negative_prompt_embeds, negative_pooled_prompt_embeds,
            "negative_prompt", embeds.shape[0])
        if negative.shape[1:] != embeds.shape[1:]:
            raise ValueError(f"negative_prompt_embeds {tuple(negative.shape)} and prompt_embeds {tuple(embeds.shape)} "
                             "must have the same sequence length and width (true CFG runs them in one batch)")
    text_ids = torch.zeros(embeds.shape[1], 3, device=embeds.device, dtype=text_encoder.dtype)

    check_image_request(batch=embeds.shape[0] * n)  # before repeating

    def per_image(x: torch.Tensor | None) -> torch.Tensor | None:
        return x.repeat_interleave(n, dim=0) if x is not None and n > 1 else x

    return {
        "prompt_embeds": per_image(embeds), "pooled_prompt_embeds": per_image(pooled), "text_ids": text_ids,
        "negative_prompt_embeds": per_image(negative), "negative_pooled_prompt_embeds": per_image(negative_pooled),
    }
