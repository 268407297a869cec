"""The CPU kernels behind diffblocks.models.kernels and cpu_attention: torch's stock op vs oneDNN, one thread.

    python bench/cpu_kernels.py            # linear, 1x1 and 3x3 convolution, attention; fp32
    python bench/cpu_kernels.py --repeats 30

Each row times the stock call (``F.linear`` = MKL sgemm, ``F.conv2d`` on a 1x1 kernel =
im2col + sgemm, on a 3x3 kernel = oneDNN's direct convolution, ``F.scaled_dot_product_attention``
= the fused CPU kernel) and the route ``diffblocks.models.kernels`` has for it, with the routing
forced on (thresholds ignored), so the crossover the thresholds encode is visible. Median of
``--repeats`` in process CPU time; the last column says what the default routing picks for that
shape. The attention table times the per-head oneDNN route forced, the default route, and for
short-keys shapes the same route with its batched products left on MKL (no oneDNN hint).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

import torch
import torch.nn.functional as F

from diffblocks.models import cpu_attention, kernels

LINEAR = [(2, 320, 1280), (154, 32, 32), (2048, 32, 32), (256, 128, 128), (154, 768, 768), (1152, 512, 512),
          (1024, 1024, 1024), (1154, 768, 3072)]
CONV_1X1 = [(2, 32, 32, 32, False), (2, 64, 32, 16, False), (2, 128, 256, 24, False), (1, 256, 128, 64, False),
            (2, 32, 32, 32, True), (2, 64, 32, 32, True), (2, 128, 64, 16, True)]
#: (batch, in, out, side, stride), channels-last as the loader prepares models.
CONV_3X3 = [(2, 64, 64, 6, 1), (2, 128, 128, 24, 1), (2, 256, 256, 12, 1), (2, 512, 512, 6, 1),
            (2, 1024, 512, 6, 1), (2, 256, 256, 12, 2), (1, 1280, 1280, 8, 1), (2, 1280, 1280, 16, 1)]
ATTENTION = [(2, 8, 144, 144, 32), (2, 8, 576, 576, 16), (1, 2, 1536, 1536, 16), (1, 4, 640, 640, 64),
             (1, 4, 1088, 1088, 64), (2, 8, 1024, 1024, 40), (1, 1, 576, 576, 256), (1, 1, 1024, 1024, 512),
             (1, 2, 4096, 4096, 128), (2, 8, 256, 256, 8), (2, 4, 256, 256, 16), (1, 1, 4096, 4096, 4),
             (2, 8, 256, 77, 8), (2, 8, 576, 77, 16), (2, 10, 1024, 77, 64), (2, 8, 36, 77, 64)]


def _time(fn: Callable[[], object], repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        samples.append(time.process_time() - start)
    return statistics.median(samples)


def _forced() -> Any:
    return mock.patch.multiple(kernels, LINEAR_MIN_MACS=0, CONV_MIN_MACS=0, CONV3X3_PRODUCT_MIN_DEPTH=0,
                               CONV3X3_PRODUCT_MAX_PATCHES=1 << 62)


def _per_head_only() -> Any:
    return mock.patch.multiple(cpu_attention, ATTENTION_MIN_SCORES=0, ATTENTION_MIN_MACS=0, ATTENTION_MIN_HEAD_DIM=0,
                               ATTENTION_SHORT_KV=0, ATTENTION_PAD_BELOW=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, CPU {torch.backends.cpu.get_cpu_capability()}, 1 thread, fp32, "
          f"median of {args.repeats} (process CPU time)\n")

    print("| linear M x K x N | stock µs (GFLOP/s) | oneDNN µs (GFLOP/s) | oneDNN / stock | default |")
    print("|---|---:|---:|---:|---|")
    for m, k, n in LINEAR:
        x, w, b = torch.randn(m, k), torch.randn(n, k), torch.randn(n)
        flops = 2 * m * k * n
        stock = _time(lambda: F.linear(x, w, b), args.repeats)
        with torch.no_grad(), _forced():
            fast = _time(lambda: kernels.linear(x, w, b), args.repeats)
        picks = "oneDNN" if m * k * n >= kernels.LINEAR_MIN_MACS else "stock"
        print(f"| {m} x {k} x {n} | {stock * 1e6:.0f} ({flops / stock / 1e9:.0f}) | {fast * 1e6:.0f} "
              f"({flops / fast / 1e9:.0f}) | {fast / stock:.2f}x | {picks} |")

    print("\n| 1x1 conv N, C -> C', H=W, layout | stock µs | oneDNN µs | oneDNN / stock | default |")
    print("|---|---:|---:|---:|---|")
    for batch, c_in, c_out, side, channels_last in CONV_1X1:
        conv = kernels.Conv2d(c_in, c_out, 1)
        x = torch.randn(batch, c_in, side, side)
        if channels_last:
            conv.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            stock = _time(lambda: F.conv2d(x, conv.weight, conv.bias), args.repeats)
            with _forced():
                fast = _time(lambda: conv(x), args.repeats)
        picks = "oneDNN" if kernels._conv_pays(x, c_out) else "stock"
        layout = "NHWC" if channels_last else "NCHW"
        print(f"| {batch}, {c_in} -> {c_out}, {side}, {layout} | {stock * 1e6:.0f} | {fast * 1e6:.0f} | {fast / stock:.2f}x | {picks} |")

    print("\n| 3x3 conv N, C -> C', H=W, stride (NHWC) | stock µs (GFLOP/s) | one product µs (GFLOP/s) | product / stock | default |")
    print("|---|---:|---:|---:|---|")
    for batch, c_in, c_out, side, stride in CONV_3X3:
        conv = kernels.Conv2d(c_in, c_out, 3, stride=stride, padding=1).to(memory_format=torch.channels_last)
        x = torch.randn(batch, c_in, side, side).contiguous(memory_format=torch.channels_last)
        out_side = (side - 1) // stride + 1
        flops = 2 * batch * out_side * out_side * c_out * c_in * 9
        with torch.no_grad():
            stock = _time(lambda: F.conv2d(x, conv.weight, conv.bias, stride=stride, padding=1), args.repeats)
            with _forced():
                fast = _time(lambda: conv(x), args.repeats)
        picks = "product" if kernels._im2col_pays(x, conv.weight, stride) else "stock"
        print(f"| {batch}, {c_in} -> {c_out}, {side}, {stride} | {stock * 1e6:.0f} ({flops / stock / 1e9:.0f}) | "
              f"{fast * 1e6:.0f} ({flops / fast / 1e9:.0f}) | {fast / stock:.2f}x | {picks} |")

    print("\n| attention B, H, L, S, D | SDPA ms | oneDNN per head ms | default route | default ms | default / SDPA "
          "| short keys on MKL ms |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for b, h, n, s, d in ATTENTION:
        q, k, v = torch.randn(b, h, n, d), torch.randn(b, h, s, d), torch.randn(b, h, s, d)
        with torch.no_grad():
            stock = _time(lambda: F.scaled_dot_product_attention(q, k, v), args.repeats)
            with _per_head_only():
                per_head = _time(lambda: cpu_attention.attention(q, k, v), args.repeats)
            route = cpu_attention.attention_route(b, h, n, s, d)
            default = stock if route == "SDPA" else _time(lambda: cpu_attention.attention(q, k, v), args.repeats)
            on_mkl = "-"
            if route == "short keys":
                with mock.patch.object(cpu_attention, "_MATMUL_SETTING", None):
                    on_mkl = f"{_time(lambda: cpu_attention.attention(q, k, v), args.repeats) * 1e3:.2f}"
        print(f"| {b}, {h}, {n}, {s}, {d} | {stock * 1e3:.2f} | {per_head * 1e3:.2f} | {route} | "
              f"{default * 1e3:.2f} | {default / stock:.2f}x | {on_mkl} |")

if __name__ == "__main__":
    main()
