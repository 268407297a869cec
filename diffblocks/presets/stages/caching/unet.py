"""Step caches for UNet denoisers (SD 1.x / SDXL): drop-in replacements of ``predict_noise``.

All three reuse the UNet's *deep* features and recompute the *shallow* path at every step. With
the default ``depth=0`` (DeepCache's shallowest branch) the shallow path is ``conv_in``, the last
layer of the last up block and ``conv_out``, and the cached feature is that layer's input; with
``depth=k >= 1`` it is ``conv_in``, the first ``k`` down blocks, the last ``k`` up blocks and
``conv_out``, and the cached feature the input of those up blocks. They differ in when they reuse:

* ``predict_noise_deepcache``: on a fixed schedule, a full pass every ``interval`` calls
  (DeepCache, Ma et al. 2023, arXiv:2312.00858);
* ``predict_noise_fbcache``: when the first down block's output changed by less than
  ``threshold`` (relative L1) since the last full pass (First-Block-Cache, as in ParaAttention);
* ``predict_noise_teacache``: while the accumulated (optionally rescaled) relative change of the
  timestep embedding stays under ``threshold`` (TeaCache, Liu et al. 2024, arXiv:2411.19108).

A threshold of 0 (or ``interval=1``) never reuses and gives exactly ``predict_noise``'s output.
"""

from __future__ import annotations

from typing import Any

import torch

from ....blocks.context import RunContext
from ....blocks.function import block
from ....blocks.types import NoisePred, Latents, PooledEmbeds, PromptEmbeds, TimeIds, Timestep
from .hints import UNET
from .policy import count_step, relative_l1, same_shapes, teacache_reuse

__all__ = ["predict_noise_deepcache", "predict_noise_fbcache", "predict_noise_teacache"]


class _UNetSteps:
    """One UNet call in phases, either in full (storing the deep features in ``state``) or the
    shallow path on the stored deep features. ``depth`` shallow levels are always recomputed;
    ``depth=0`` is DeepCache's shallowest branch: only ``conv_in`` and the last layer of the last
    up block (the input of that layer is what is cached)."""

    def __init__(self, unet: Any, depth: int, sample: torch.Tensor, t: torch.Tensor,
                 encoder_hidden_states: torch.Tensor, text_embeds: torch.Tensor | None,
                 time_ids: torch.Tensor | None, residuals: tuple[Any, Any, Any]) -> None:
        n_levels = len(unet.down_blocks)
        if not 0 <= depth < n_levels:
            raise ValueError(f"step cache: depth must be in 0..{n_levels - 1} for this UNet, got {depth}")
        added = {"text_embeds": text_embeds, "time_ids": time_ids} if text_embeds is not None else None
        self.unet, self.depth = unet, depth
        self.sample, self.cond = unet.prepare(sample, t, encoder_hidden_states, added_cond_kwargs=added)
        self.down_res, self.mid_res, adapter = residuals
        self.adapter = list(adapter or ())
        n_up = len(unet.up_blocks)
        self.boundary = n_up - max(depth, 1)  # first (partly) shallow up block
        # The shallow up blocks take the first n skips (conv_in's and the first down blocks').
        self.n_shallow_skips = sum(len(b.resnets) for b in unet.up_blocks[self.boundary:]) if depth else 1
        self.h = unet.conv_in(self.sample)
        self.skips = [self.h]
        self.next_down = 0
        self.n_blocks = n_levels + n_up + (unet.mid_block is not None)
        # Blocks run on a reused step: the shallow levels both ways, or the last up block's last layer.
        self.n_shallow_blocks = 2 * depth if depth else 1

    def first_block(self) -> torch.Tensor:
        """Run the first down block only; its output is First-Block-Cache's change signal."""
        self.h = self.unet.down(self.h, self.skips, self.cond, 0, 1, self.adapter)
        self.next_down = 1
        return self.h

    def full(self, state: dict[str, Any]) -> torch.Tensor:
        u, cond = self.unet, self.cond
        h = u.down(self.h, self.skips, cond, self.next_down, None, self.adapter)
        skips = self.skips
        if self.down_res is not None:
            skips = [s + r for s, r in zip(skips, self.down_res, strict=True)]
        h = u.middle(h, cond, self.adapter)
        if self.mid_res is not None:
            h = h + self.mid_res
        if self.depth:
            state["deep"] = u.up(h, skips, cond, 0, self.boundary)
            return u.out(u.up(state["deep"], skips[:self.n_shallow_skips], cond, self.boundary))
        # depth 0: the last up block takes the first len(resnets) skips, its last layer skips[0].
        last = u.up_blocks[-1]
        n_layers = len(last.resnets)
        h = u.up(h, skips, cond, 0, self.boundary)
        state["deep"] = last(h, skips[1:n_layers], cond.emb, cond.ctx, None, slice(0, n_layers - 1))
        return u.out(last(state["deep"], skips[:1], cond.emb, cond.ctx, None, slice(n_layers - 1, None)))

    def shallow(self, state: dict[str, Any]) -> torch.Tensor:
        u, cond = self.unet, self.cond
        u.down(self.h, self.skips, cond, self.next_down, self.depth, self.adapter)
        skips = self.skips[:self.n_shallow_skips]
        if self.down_res is not None:
            skips = [s + r for s, r in zip(skips, self.down_res)]
        if self.depth:
            return u.out(u.up(state["deep"], skips, cond, self.boundary))
        last = u.up_blocks[-1]
        return u.out(last(state["deep"], skips, cond.emb, cond.ctx, None, slice(len(last.resnets) - 1, None)))

    def finish(self, ctx: RunContext, state: dict[str, Any], reuse: bool) -> torch.Tensor:
        out = self.shallow(state) if reuse else self.full(state)
        skipped = self.n_blocks - self.n_shallow_blocks if reuse else 0
        count_step(ctx, reuse, self.n_blocks - skipped, skipped)
        return out


# The ports mirror predict_noise's, plus the UNet's ControlNet / T2I-Adapter residual inputs
# (diffusers' argument names), so a cache can replace predict_noise in any SD graph.

@block("predict_noise_deepcache", version=1, components={"unet": UNET}, output_name="noise_pred",
       config=["interval", "depth"])
def predict_noise_deepcache(
    unet: Any, sample: Latents, t: Timestep, encoder_hidden_states: PromptEmbeds, ctx: RunContext,
    text_embeds: PooledEmbeds | None = None, time_ids: TimeIds | None = None,
    down_block_additional_residuals: Any = None, mid_block_additional_residual: Any = None,
    down_intrablock_additional_residuals: Any = None, interval: int = 3, depth: int = 0,
) -> NoisePred:
    """``predict_noise`` with DeepCache: a full UNet pass every ``interval`` calls; in between,
    only the shallow path (``depth`` levels) runs on the last full pass's deep features."""
    steps = _UNetSteps(unet, depth, sample, t, encoder_hidden_states, text_embeds, time_ids,
                       (down_block_additional_residuals, mid_block_additional_residual,
                        down_intrablock_additional_residuals))
    state = ctx.state
    calls = state.get("calls", 0)
    state["calls"] = calls + 1
    reuse = same_shapes(state, sample, encoder_hidden_states) and calls % max(interval, 1) != 0
    return steps.finish(ctx, state, reuse)


@block("predict_noise_fbcache", version=1, components={"unet": UNET}, output_name="noise_pred",
       config=["threshold", "depth"])
def predict_noise_fbcache(
    unet: Any, sample: Latents, t: Timestep, encoder_hidden_states: PromptEmbeds, ctx: RunContext,
    text_embeds: PooledEmbeds | None = None, time_ids: TimeIds | None = None,
    down_block_additional_residuals: Any = None, mid_block_additional_residual: Any = None,
    down_intrablock_additional_residuals: Any = None, threshold: float = 0.08, depth: int = 0,
) -> NoisePred:
    """``predict_noise`` with First-Block-Cache: run the first down block; if its output moved by
    less than ``threshold`` (relative L1) since the last full pass, reuse that pass's deep features."""
    steps = _UNetSteps(unet, depth, sample, t, encoder_hidden_states, text_embeds, time_ids,
                       (down_block_additional_residuals, mid_block_additional_residual,
                        down_intrablock_additional_residuals))
    state = ctx.state
    first = steps.first_block()
    reuse = (same_shapes(state, sample, encoder_hidden_states)
             and relative_l1(first, state["first"]) < threshold)
    if not reuse:
        state["first"] = first
    return steps.finish(ctx, state, reuse)


@block("predict_noise_teacache", version=1, components={"unet": UNET}, output_name="noise_pred",
       config=["threshold", "depth", "coefficients"])
def predict_noise_teacache(
    unet: Any, sample: Latents, t: Timestep, encoder_hidden_states: PromptEmbeds, ctx: RunContext,
    text_embeds: PooledEmbeds | None = None, time_ids: TimeIds | None = None,
    down_block_additional_residuals: Any = None, mid_block_additional_residual: Any = None,
    down_intrablock_additional_residuals: Any = None, threshold: float = 0.1, depth: int = 0,
    coefficients: tuple[float, ...] = (),
) -> NoisePred:
    """``predict_noise`` with a TeaCache-style schedule: accumulate the (rescaled) relative change
    of the timestep embedding from step to step; reuse the deep features while the sum stays under
    ``threshold``, and run a full pass (resetting the sum) when it does not. The first and last
    steps always run in full."""
    steps = _UNetSteps(unet, depth, sample, t, encoder_hidden_states, text_embeds, time_ids,
                       (down_block_additional_residuals, mid_block_additional_residual,
                        down_intrablock_additional_residuals))
    state = ctx.state
    reuse = teacache_reuse(ctx, steps.cond.emb, threshold, coefficients, sample, encoder_hidden_states)
    return steps.finish(ctx, state, reuse)
