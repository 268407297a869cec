"""Prompt encoding with CLIP text encoders: SD (one encoder) and SDXL (two, concatenated).

Both blocks return embeddings already repeated ``num_images_per_prompt`` times per prompt
(rows ``p0, p0, p1, p1``), and the negative embeddings alongside, so a guider can batch them.
"""

from __future__ import annotations

from typing import Any

import torch

from ...limits import check_image_request
from ..stages.prompts import as_prompt_list
from . import hints as _hints
from ...blocks.function import block
from ...blocks.ports import Outputs
from ...blocks.types import PooledEmbeds, PromptEmbeds

__all__ = ["encode_prompt", "encode_prompt_sdxl"]


def _token_ids(tokenizer: Any, prompts: list[str], length: int | None = None) -> torch.Tensor:
    return tokenizer(
        prompts, padding="max_length", max_length=length or tokenizer.model_max_length,
        truncation=True, return_tensors="pt",
    ).input_ids


def _device(module: Any) -> torch.device:
    return next(module.parameters()).device


def _per_image(x: torch.Tensor, n: int) -> torch.Tensor:
    check_image_request(batch=x.shape[0] * n)  # before repeating
    return x.repeat_interleave(n, dim=0) if n > 1 else x


@block(
    "encode_prompt", version=1,
    components={"text_encoder": _hints.TEXT_ENCODER, "tokenizer": _hints.TOKENIZER},
)
def encode_prompt(
    text_encoder: Any,
    tokenizer: Any,
    prompt: str | list[str] | None = None,
    negative_prompt: str | list[str] | None = None,
    num_images_per_prompt: int = 1,
    clip_skip: int | None = None,
    prompt_embeds: PromptEmbeds | None = None,
    negative_prompt_embeds: PromptEmbeds | None = None,
) -> Outputs(prompt_embeds=PromptEmbeds, negative_prompt_embeds=PromptEmbeds):
    """Encode prompts (and negative prompts, "" by default) with one CLIP text encoder (SD 1.x/2.x).
    Embeddings given as inputs (e.g. from a prompt-weighting tool) are used instead of encoding.

    Args:
        clip_skip: use the hidden state this many layers before the last (with the final layer norm).
    """
    mask_wanted = getattr(text_encoder.config, "use_attention_mask", False)
    device = _device(text_encoder)

    def run(texts: list[str], skip: int | None, length: int | None = None) -> torch.Tensor:
        tokens = tokenizer(texts, padding="max_length", max_length=length or tokenizer.model_max_length,
                           truncation=True, return_tensors="pt")
        mask = tokens.attention_mask.to(device) if mask_wanted else None
        if skip is None:
            return text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]
        out = text_encoder(tokens.input_ids.to(device), attention_mask=mask, output_hidden_states=True)
        # transformers 4 nests the layers in .text_model; transformers 5 does not.
        final_norm = getattr(text_encoder, "text_model", text_encoder).final_layer_norm
        return final_norm(out.hidden_states[-(skip + 1)])

    embeds = prompt_embeds if prompt_embeds is not None else run(as_prompt_list(prompt, "prompt"), clip_skip)
    negative = negative_prompt_embeds
    if negative is None:
        negatives = as_prompt_list("" if negative_prompt is None else negative_prompt, "negative_prompt", embeds.shape[0])
        # diffusers encodes negative prompts without clip_skip; kept so that results match.
        negative = run(negatives, None, embeds.shape[1])
    dtype = text_encoder.dtype
    return {
        "prompt_embeds": _per_image(embeds.to(dtype), num_images_per_prompt),
        "negative_prompt_embeds": _per_image(negative.to(dtype), num_images_per_prompt),
    }


SDXL_OUTPUTS = Outputs(
    prompt_embeds=PromptEmbeds, negative_prompt_embeds=PromptEmbeds,
    pooled_prompt_embeds=PooledEmbeds, negative_pooled_prompt_embeds=PooledEmbeds,
)


@block(
    "encode_prompt_sdxl", version=1,
    components={
        "text_encoder": _hints.TEXT_ENCODER, "tokenizer": _hints.TOKENIZER,
        "text_encoder_2": _hints.TEXT_ENCODER_2, "tokenizer_2": _hints.TOKENIZER,
    },
    config=["force_zeros_for_empty_prompt"],
    outputs=SDXL_OUTPUTS,
)
def encode_prompt_sdxl(
    text_encoder: Any,
    tokenizer: Any,
    text_encoder_2: Any,
    tokenizer_2: Any,
    prompt: str | list[str] | None = None,
    prompt_2: str | list[str] | None = None,
    negative_prompt: str | list[str] | None = None,
    negative_prompt_2: str | list[str] | None = None,
    num_images_per_prompt: int = 1,
    clip_skip: int | None = None,
    prompt_embeds: PromptEmbeds | None = None,
    negative_prompt_embeds: PromptEmbeds | None = None,
    pooled_prompt_embeds: PooledEmbeds | None = None,
    negative_pooled_prompt_embeds: PooledEmbeds | None = None,
    force_zeros_for_empty_prompt: bool = True,
) -> dict:
    """Encode prompts with SDXL's two CLIP encoders: per-token states of both, concatenated on the
    feature axis, and the second encoder's pooled projection. Embeddings given as inputs are used
    instead of encoding (per-token and pooled together).

    Args:
        prompt_2: prompt for the second encoder (default: ``prompt``).
        clip_skip: layers to skip before the penultimate one SDXL uses.
        force_zeros_for_empty_prompt: with no negative prompt, use zero negative embeddings.
    """
    for given, pooled_given, name in ((prompt_embeds, pooled_prompt_embeds, ""), (negative_prompt_embeds, negative_pooled_prompt_embeds, "negative_")):
        if (given is None) != (pooled_given is None):
            raise ValueError(f"give {name}prompt_embeds and {name}pooled_prompt_embeds together")
    pairs = [(t, e) for t, e in ((tokenizer, text_encoder), (tokenizer_2, text_encoder_2)) if e is not None]

    def run(texts: list[list[str]], layer: int, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        states, pooled = [], None
        for (tok, enc), words in zip(pairs, texts):
            out = enc(_token_ids(tok, words, length).to(_device(enc)), output_hidden_states=True)
            if out[0].ndim == 2:  # a projection model's first output is the pooled embedding
                pooled = out[0]
            states.append(out.hidden_states[layer])
        return torch.cat(states, dim=-1), pooled

    if prompt_embeds is not None:
        embeds, pooled = prompt_embeds, pooled_prompt_embeds
    else:
        prompts = as_prompt_list(prompt, "prompt")
        prompts_2 = as_prompt_list(prompt_2 if prompt_2 is not None else prompt, "prompt_2", len(prompts))
        embeds, pooled = run([prompts, prompts_2], -((clip_skip or 0) + 2))
    batch = embeds.shape[0]
    if negative_prompt_embeds is not None:
        negative, negative_pooled = negative_prompt_embeds, negative_pooled_prompt_embeds
    elif negative_prompt is None and force_zeros_for_empty_prompt:
        negative, negative_pooled = torch.zeros_like(embeds), torch.zeros_like(pooled)
    else:
        neg = as_prompt_list(negative_prompt or "", "negative_prompt", batch)
        neg_2 = as_prompt_list(negative_prompt_2 or negative_prompt or "", "negative_prompt_2", batch)
        # diffusers always takes the penultimate layer for negatives (clip_skip ignored): matched.
        negative, negative_pooled = run([neg, neg_2], -2, embeds.shape[1])
    dtype = text_encoder_2.dtype
    n = num_images_per_prompt
    return {
        "prompt_embeds": _per_image(embeds.to(dtype), n),
        "negative_prompt_embeds": _per_image(negative.to(dtype), n),
        "pooled_prompt_embeds": _per_image(pooled.to(dtype), n),
        "negative_pooled_prompt_embeds": _per_image(negative_pooled.to(dtype), n),
    }
