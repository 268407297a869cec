"""Flux guidance: two interchangeable *prepare* blocks in front of the transformer call.

* ``prepare_distilled_guidance`` (the preset's default): guidance-distilled models (Flux.1-dev,
  ``guidance_embeds=True``) take ``guidance_scale`` as a model input and run one conditional pass;
  schnell-style models (no guidance embedding) get ``guidance=None``.
* ``prepare_true_cfg``: true classifier-free guidance with a negative prompt
  (``true_cfg_scale`` > 1): unconditional and conditional inputs are batched (uncond first) into
  one transformer call, and the denoise body's ``apply_cfg`` node mixes the two halves with
  ``true_cfg_scale``. Dev-style models still receive ``guidance_scale`` as the embedded guidance.

Both have the same ports, so switching is one replace::

    graph.replace("denoise/guider", "prepare_true_cfg")
"""

from __future__ import annotations

from typing import Any

import torch

from ...blocks.context import RunContext
from ...blocks.function import block
from ..stages.guiders import batch_for_guidance as _batched  # cat([uncond, cond]) once per run
from ...blocks.ports import Outputs
from ...blocks.types import Latents, PooledEmbeds, PromptEmbeds
from . import hints

__all__ = ["prepare_distilled_guidance", "prepare_true_cfg", "embedded_guidance"]

PREPARED = Outputs(
    hidden_states=Latents, encoder_hidden_states=PromptEmbeds, pooled_projections=PooledEmbeds,
    guidance=torch.Tensor | None, guidance_active=bool,
)


def embedded_guidance(transformer: Any, guidance_scale: float, batch: int, device: torch.device) -> torch.Tensor | None:
    """The guidance model input, (batch,) filled with ``guidance_scale`` (float32), or None for a
    model without a guidance embedding."""
    if not transformer.config.guidance_embeds:
        return None
    return torch.full((batch,), float(guidance_scale), device=device, dtype=torch.float32)


@block("prepare_distilled_guidance", version=1, components={"transformer": hints.TRANSFORMER}, outputs=PREPARED)
def prepare_distilled_guidance(
    transformer: Any,
    latents: Latents,
    prompt_embeds: PromptEmbeds,
    pooled_prompt_embeds: PooledEmbeds,
    guidance_scale: float = 3.5,
    negative_prompt_embeds: PromptEmbeds | None = None,
    negative_pooled_prompt_embeds: PooledEmbeds | None = None,
    true_cfg_scale: float = 1.0,
) -> dict:
    """One conditional pass; dev-style models get ``guidance_scale`` as their guidance input.

    ``negative_*`` and ``true_cfg_scale`` belong to the common guider interface; asking for true
    CFG here is an error that names the block to swap in.

    Args:
        guidance_scale: the distilled guidance strength fed to the model (Flux.1-dev: 3.5).
    """
    if true_cfg_scale > 1 and negative_prompt_embeds is not None:
        raise ValueError(
            f"true_cfg_scale={true_cfg_scale} with a negative prompt needs the true-CFG guider: "
            "graph.replace('denoise/guider', 'prepare_true_cfg')"
        )
    guidance = embedded_guidance(transformer, guidance_scale, latents.shape[0], latents.device)
    return {"hidden_states": latents, "encoder_hidden_states": prompt_embeds,
            "pooled_projections": pooled_prompt_embeds, "guidance": guidance, "guidance_active": False}


@block("prepare_true_cfg", version=1, components={"transformer": hints.TRANSFORMER}, outputs=PREPARED)
def prepare_true_cfg(
    transformer: Any,
    latents: Latents,
    prompt_embeds: PromptEmbeds,
    pooled_prompt_embeds: PooledEmbeds,
    ctx: RunContext,
    guidance_scale: float = 3.5,
    negative_prompt_embeds: PromptEmbeds | None = None,
    negative_pooled_prompt_embeds: PooledEmbeds | None = None,
    true_cfg_scale: float = 1.0,
) -> dict:
    """True CFG: with ``true_cfg_scale`` > 1 and negative embeddings, batch [negative, positive]
    inputs for one transformer call; otherwise one conditional pass (like diffusers).

    Args:
        guidance_scale: the distilled guidance fed to dev-style models in both halves.
        true_cfg_scale: the classifier-free guidance scale applied by the combine block.
    """
    batch = latents.shape[0]
    active = true_cfg_scale > 1 and negative_prompt_embeds is not None
    rows = 2 * batch if active else batch
    guidance = embedded_guidance(transformer, guidance_scale, rows, latents.device)
    if not active:
        return {"hidden_states": latents, "encoder_hidden_states": prompt_embeds,
                "pooled_projections": pooled_prompt_embeds, "guidance": guidance, "guidance_active": False}
    embeds = _batched(ctx, "embeds", negative_prompt_embeds, prompt_embeds)
    pooled = _batched(ctx, "pooled", negative_pooled_prompt_embeds, pooled_prompt_embeds)
    return {"hidden_states": torch.cat([latents, latents]), "encoder_hidden_states": embeds,
            "pooled_projections": pooled, "guidance": guidance, "guidance_active": True}
