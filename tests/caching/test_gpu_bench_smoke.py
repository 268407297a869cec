"""Smoke test of bench/gpu.py: at toy sizes on the CPU every model and variant runs, our eager
loop matches diffusers' eager loop, and the table is written (speed is never asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("diffusers")


def test_gpu_bench_smoke(tmp_path: Path):
    from bench.gpu import main

    out = tmp_path / "gpu.md"
    text = main(["--smoke", "--out", str(out)])
    assert out.read_text(encoding="utf-8").strip() == text.strip()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith(("| sd15 |", "| sdxl |", "| flux |"))]
    assert {(r[0], r[1]) for r in rows} >= {("sd15", "ours eager"), ("sd15", "ours deepcache"), ("sdxl", "ours eager"),
                                             ("flux", "ours eager"), ("flux", "ours fbcache"),
                                             ("flux", "diffusers FBC 0.08")}
    for model, variant, _, _, diff in rows:
        if variant == "ours eager":
            assert float(diff) < 1e-4, (model, diff)  # same weights, same function
