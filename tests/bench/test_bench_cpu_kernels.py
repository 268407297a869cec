"""Smoke test of bench/cpu_kernels.py: it runs and prints a row per shape in each table, and the
"default" column agrees with what diffblocks.models.kernels really does for that shape.
Speed is never asserted."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from diffblocks.models import kernels

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "cpu_kernels.py"


def test_prints_every_row_and_the_default_route(capsys):
    spec = importlib.util.spec_from_file_location("bench_cpu_kernels", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--repeats", "1"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| linear")
            and not line.startswith("| 1x1") and not line.startswith("| attention")]
    assert len(rows) == len(module.LINEAR) + len(module.CONV_1X1) + len(module.ATTENTION)
    attention_rows = rows[-len(module.ATTENTION):]
    for (b, h, n, s, d), row in zip(module.ATTENTION, attention_rows):
        with torch.no_grad():
            taken = kernels.attention(torch.randn(b, h, n, d), torch.randn(b, h, s, d), torch.randn(b, h, s, d))
        assert row.rstrip(" |").endswith("oneDNN" if taken is not None else "SDPA"), row
