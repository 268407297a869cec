"""What every step cache shares: the change measure, the per-run bookkeeping, the report counts.

A step cache keeps its memory in the run context (``ctx.state``, private to its node and fresh
on every run), never on the block or the model, so two runs in a row give the same result and a
graph can be run from several threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ....blocks.context import RunContext
from ....graph.report import REPORT_COUNTERS

__all__ = ["relative_l1", "rescale", "same_shapes", "teacache_reuse", "count_step"]


def relative_l1(new: torch.Tensor, old: torch.Tensor) -> float:
    """Mean absolute change relative to the old value's mean magnitude (First-Block-Cache's and
    TeaCache's measure)."""
    return float((new - old).abs().mean() / old.abs().mean().clamp_min(1e-12))


def rescale(change: float, coefficients: Sequence[float]) -> float:
    """TeaCache's polynomial rescaling of a raw change (highest power first); ``()`` keeps it as is.

    The published coefficients were fitted per model on real checkpoints (e.g. Flux.1:
    ``[498.65, -283.78, 55.86, -3.82, 0.264]``); random bench weights get the identity.
    """
    if not coefficients:
        return change
    value = 0.0
    for c in coefficients:
        value = value * change + c
    return abs(value)


def same_shapes(state: dict[str, Any], *tensors: torch.Tensor) -> bool:
    """Whether the cached entry was made for inputs of these shapes (guidance batching can switch
    between steps, e.g. outside ``prepare_guidance``'s range), remembering the new ones."""
    shapes = tuple(tuple(t.shape) for t in tensors)
    same = state.get("shapes") == shapes
    state["shapes"] = shapes
    return same


def teacache_reuse(ctx: RunContext, signal: torch.Tensor, threshold: float, coefficients: Sequence[float],
                   *inputs: torch.Tensor) -> bool:
    """TeaCache's decision: add the (rescaled) relative change of ``signal`` since the last call to
    a running sum; reuse while the sum stays under ``threshold``, else run in full and reset it.
    The first call, the loop's last step and a change of input shapes always run in full."""
    state = ctx.state
    same = same_shapes(state, *inputs)
    last = ctx.step is not None and ctx.step == ctx.total - 1
    if same and not last:
        state["acc"] = state.get("acc", 0.0) + rescale(relative_l1(signal, state["signal"]), coefficients)
    reuse = same and not last and state["acc"] < threshold
    if not reuse:
        state["acc"] = 0.0
    state["signal"] = signal
    return reuse


def count_step(ctx: RunContext, reused: bool, blocks_run: int, blocks_skipped: int) -> None:
    """Add one denoiser call to this node's counts in the run report (``RunReport.counters``)."""
    counts = ctx.run.setdefault(REPORT_COUNTERS, {}).setdefault(
        ctx.node, {"steps": 0, "reused_steps": 0, "blocks_run": 0, "blocks_skipped": 0})
    counts["steps"] += 1
    counts["reused_steps"] += int(reused)
    counts["blocks_run"] += blocks_run
    counts["blocks_skipped"] += blocks_skipped
