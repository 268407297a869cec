"""Tiny numeric blocks and a graph for the sharing tests (registered once, names prefixed share_)."""

from __future__ import annotations

from diffblocks.blocks import block
from diffblocks.graph import Graph


@block("share_inc", output_name="x")
def inc(x: float, step: float = 1.0) -> float:
    """Add ``step``."""
    return x + step


@block("share_scale", output_name="x", config={"factor": 2.0})
def scale(x: float, factor: float) -> float:
    """Multiply by the configured ``factor``."""
    return x * factor


def numeric(factor: float = 2.0) -> Graph:
    """x -> (x + 1) * factor, with a default for x."""
    g = Graph("numeric", description="Adds one, then scales.")
    g.add("inc", inc).add("mul", scale, config={"factor": factor})
    g.connect("inc.x", "mul.x")
    g.expose_input("x", "inc.x", default=1.0, description="the start value").expose_output("x", "mul.x")
    return g
