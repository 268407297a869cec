"""Smoke test of bench/cpu_kernels.py: it runs and prints a row per shape in each table, and the
"default" column agrees with what diffblocks.models.kernels / cpu_attention really do for that shape.
Speed is never asserted."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from diffblocks.models import cpu_attention, kernels

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "cpu_kernels.py"


def test_prints_every_row_and_the_default_route(capsys):
    spec = importlib.util.spec_from_file_location("bench_cpu_kernels", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--repeats", "1"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith(
        ("| linear", "| 1x1", "| 3x3", "| attention"))]
    assert len(rows) == len(module.LINEAR) + len(module.CONV_1X1) + len(module.CONV_3X3) + len(module.ATTENTION)
    attention_rows = rows[-len(module.ATTENTION):]
    for (b, h, n, s, d), row in zip(module.ATTENTION, attention_rows):
        q, k, v = torch.randn(b, h, n, d), torch.randn(b, h, s, d), torch.randn(b, h, s, d)
        with torch.no_grad():
            taken = cpu_attention.attention(q, k, v)
        route = row.split(" | ")[3]
        assert (taken is None) == (route == "SDPA"), row
    conv_rows = rows[len(module.LINEAR) + len(module.CONV_1X1):][:len(module.CONV_3X3)]
    for (batch, c_in, c_out, side, stride), row in zip(module.CONV_3X3, conv_rows):
        conv = kernels.Conv2d(c_in, c_out, 3, stride=stride, padding=1).to(memory_format=torch.channels_last)
        x = torch.randn(batch, c_in, side, side).contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
            conv(x)
        product = "mkldnn::_linear_pointwise" in {e.key for e in prof.key_averages()}
        assert row.rstrip(" |").endswith("product" if product else "stock"), row
