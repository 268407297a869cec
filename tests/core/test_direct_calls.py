"""Blocks called like functions: a leaf block runs in the machinery alone (no graph import),
composites run through their plan."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from diffblocks.blocks import RunContext, block
from diffblocks.graph import Graph, Loop, Switch

from . import helpers as h

ROOT = Path(__file__).resolve().parents[2]


def test_a_leaf_block_runs_without_the_graph_package():
    code = (
        "import sys\n"
        "from diffblocks.blocks import block\n"
        "@block('t_alone', register=False, config=['k'])\n"
        "def f(x: float, k: float = 2.0) -> float:\n"
        "    return x * k\n"
        "assert f(x=3.0) == 6.0 and f.with_config(k=4.0)(x=1.0) == 4.0\n"
        "assert 'diffblocks.graph' not in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_direct_call_gives_a_context_and_checks_components():
    @block("t_ctx_direct", register=False, components={"enc": "x.Y"})
    def counted(enc, x: float, ctx: RunContext) -> float:
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        assert ctx.step is None and ctx.run == {}
        return enc(x) + ctx.state["n"]

    assert counted(components={"enc": lambda v: v * 10}, x=1.0) == 11.0
    try:
        counted(x=1.0)
    except Exception as exc:  # one clear error naming the component
        assert "needs component 'enc'" in str(exc)
    else:
        raise AssertionError("a missing component must be an error")


def test_direct_call_runs_without_autograd():
    @block("t_nograd_direct", register=False)
    def double(latents: h.Latents) -> h.Latents:
        return latents * 2

    assert not double(latents=torch.ones(1, requires_grad=True)).requires_grad


def test_loops_and_switches_can_be_called():
    loop = Loop(Graph.wrap(h.inc), over="items", item="step", carry={"x": "x"})
    assert loop(items=[1.0, 1.0, 1.0], x=1.0) == 4.0
    switch = Switch({"big": Graph.wrap(h.mul, "big"), "small": Graph.wrap(h.inc, "small")}, predicate="core_bigger")
    assert switch(x=3.0) == 4.0
