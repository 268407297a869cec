"""T2I-Adapter: features computed once before the loop, added inside the UNet's down blocks each step.

As in diffusers' adapter pipelines, the features are scaled by ``adapter_conditioning_scale``,
brought to the latent batch, doubled for guidance (both halves get them) and used for the first
``int(steps * adapter_conditioning_factor)`` steps.
"""

from __future__ import annotations

from typing import Any

from ...blocks.context import RunContext
from ...blocks.function import block
from ...blocks.types import AdapterResiduals, ControlImage, PromptEmbeds
from ..stages.guiders import batch_for_guidance
from . import hints as _hints
from .images import to_prompt_batch

__all__ = ["encode_adapter_features", "apply_adapter_features"]


@block("encode_adapter_features", version=1, components={"adapter": _hints.T2I_ADAPTER}, output_name="adapter_state")
def encode_adapter_features(
    adapter: Any, adapter_image: ControlImage, prompt_embeds: PromptEmbeds, adapter_conditioning_scale: float = 1.0,
) -> AdapterResiduals:
    """The adapter's features for the control image, scaled and batched like the latents."""
    dtype = next(adapter.parameters()).dtype
    features = adapter(adapter_image.to(device=prompt_embeds.device, dtype=dtype))
    rows = prompt_embeds.shape[0]
    return [to_prompt_batch(f * adapter_conditioning_scale, rows, "encode_adapter_features.adapter_image") for f in features]


@block("apply_adapter_features", version=1, output_name="down_intrablock_additional_residuals")
def apply_adapter_features(
    adapter_state: AdapterResiduals, ctx: RunContext, guidance_active: bool = False, adapter_conditioning_factor: float = 1.0,
) -> AdapterResiduals | None:
    """This step's T2I-Adapter residuals: the features (doubled when guidance batched this step),
    or none once the step is past ``adapter_conditioning_factor`` of the loop."""
    step, total = (ctx.step or 0), (ctx.total or 1)
    if step >= int(total * adapter_conditioning_factor):
        return None
    if not guidance_active:
        return adapter_state
    return [batch_for_guidance(ctx, f"feature{i}", f, f) for i, f in enumerate(adapter_state)]
