"""Step caches for the Flux transformer: drop-in replacements of ``predict_flow``.

Both reuse the residual the transformer blocks added to the image tokens in the last full pass:

* ``predict_flow_fbcache``: run the first double-stream block; if its residual changed by less
  than ``threshold`` (relative L1) since the last full pass, add the cached residual of the
  remaining blocks instead of running them (First-Block-Cache, as diffusers'
  ``FirstBlockCacheConfig`` and ParaAttention);
* ``predict_flow_teacache``: accumulate the (optionally rescaled) relative change of the first
  block's modulated input from step to step; while the sum stays under ``threshold`` add the
  cached residual of all blocks (TeaCache, Liu et al. 2024, arXiv:2411.19108). The first and last
  steps always run in full.

A threshold of 0 never reuses and gives exactly ``predict_flow``'s output.
"""

from __future__ import annotations

from typing import Any

import torch

from ....blocks.context import RunContext
from ....blocks.function import block
from ....blocks.types import LatentIds, Latents, NoisePred, PooledEmbeds, PromptEmbeds, TextIds, Timestep
from .hints import TRANSFORMER
from .policy import count_step, relative_l1, same_shapes, teacache_reuse

__all__ = ["predict_flow_fbcache", "predict_flow_teacache"]


def _embed(transformer: Any, hidden_states: torch.Tensor, t: torch.Tensor, encoder_hidden_states: torch.Tensor,
           pooled_projections: torch.Tensor, txt_ids: torch.Tensor, img_ids: torch.Tensor,
           guidance: torch.Tensor | None) -> Any:
    # As predict_flow: Flux models take the timestep as a sigma in [0, 1].
    timestep = t.expand(hidden_states.shape[0]).to(hidden_states.dtype) / 1000
    return transformer.embed(hidden_states, encoder_hidden_states, pooled_projections, timestep, img_ids, txt_ids,
                             guidance)


def _finish(transformer: Any, tokens: Any, start: int, state: dict[str, Any], reuse: bool,
            ctx: RunContext) -> torch.Tensor:
    """Blocks ``start:`` in full (caching their image-token residual) or the cached residual."""
    n = transformer.num_blocks
    if reuse:
        tokens.x = tokens.x + state["residual"]
    else:
        before = tokens.x
        tokens = transformer.run_blocks(tokens, start)
        state["residual"] = tokens.x - before
    count_step(ctx, reuse, start if reuse else n, n - start if reuse else 0)
    return transformer.project_out(tokens)


@block("predict_flow_fbcache", version=1, components={"transformer": TRANSFORMER}, output_name="noise_pred",
       config=["threshold"])
def predict_flow_fbcache(
    transformer: Any, hidden_states: Latents, t: Timestep, encoder_hidden_states: PromptEmbeds,
    pooled_projections: PooledEmbeds, txt_ids: TextIds, img_ids: LatentIds, ctx: RunContext,
    guidance: torch.Tensor | None = None, threshold: float = 0.08,
) -> NoisePred:
    """``predict_flow`` with First-Block-Cache (see the module docstring)."""
    state = ctx.state
    tokens = _embed(transformer, hidden_states, t, encoder_hidden_states, pooled_projections, txt_ids, img_ids,
                    guidance)
    before = tokens.x
    tokens = transformer.run_blocks(tokens, 0, 1)
    first = tokens.x - before
    reuse = (same_shapes(state, hidden_states, encoder_hidden_states)
             and relative_l1(first, state["first"]) < threshold)
    if not reuse:
        state["first"] = first
    return _finish(transformer, tokens, 1, state, reuse, ctx)


@block("predict_flow_teacache", version=1, components={"transformer": TRANSFORMER}, output_name="noise_pred",
       config=["threshold", "coefficients"])
def predict_flow_teacache(
    transformer: Any, hidden_states: Latents, t: Timestep, encoder_hidden_states: PromptEmbeds,
    pooled_projections: PooledEmbeds, txt_ids: TextIds, img_ids: LatentIds, ctx: RunContext,
    guidance: torch.Tensor | None = None, threshold: float = 0.1, coefficients: tuple[float, ...] = (),
) -> NoisePred:
    """``predict_flow`` with a TeaCache-style schedule (see the module docstring)."""
    state = ctx.state
    tokens = _embed(transformer, hidden_states, t, encoder_hidden_states, pooled_projections, txt_ids, img_ids,
                    guidance)
    # The first block's modulated image input: what TeaCache watches (timestep- and input-aware).
    modulated = transformer.transformer_blocks[0].norm1(tokens.x, tokens.temb)[0]
    reuse = teacache_reuse(ctx, modulated, threshold, coefficients, hidden_states, encoder_hidden_states)
    return _finish(transformer, tokens, 0, state, reuse, ctx)
