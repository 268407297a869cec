"""Generous smoke bounds on executor overhead (the real figures: bench/overhead.py)."""

from __future__ import annotations

import time

from diffblocks.blocks import block
from diffblocks.graph import Graph, Loop


@block("t_perf_add", register=False, output_name="x")
def add(x: float, t: float) -> float:
    return x + t


def test_per_node_overhead_and_compile_time_are_small():
    body = Graph.sequential([(f"n{i}", add) for i in range(10)], name="body")
    plan = Graph.wrap(Loop(body, over="ts", item="t", carry={"x": "x"}, progress=False)).compile(cache=False)
    ts = [1.0] * 200
    best = min(_timed(lambda: plan.run({"ts": ts, "x": 0.0}, progress=False)) for _ in range(3))
    assert best / 2000 < 25e-6  # target 5 µs; 5x slack for a loaded shared machine

    def build_and_compile() -> float:
        g = Graph.sequential([(f"n{i}", add) for i in range(200)], name="big")
        return _timed(lambda: g.compile(cache=False))

    assert min(build_and_compile() for _ in range(2)) < 0.25  # target 50 ms


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
