"""Where a preset run's time goes, per node, and the denoiser's FLOP/s against a plain matmul's.

    python bench/profile_presets.py                       # sd, sdxl, flux at tiny and mid, 1 and 2 threads
    python bench/profile_presets.py --kinds flux --sizes mid --threads 1

For each (size, preset, threads): one warm-up run, then the best of ``--repeats`` runs of the
preset graph on bench/pipelines.py's folder (10 steps, CFG / embedded guidance as there,
memoisation off). Time per node comes from ``on_node_end`` (called after every node, loop-body
nodes included): the process CPU time since the previous node ended is charged to the node that
just ended, so a loop's own row is only its bookkeeping. With 2 threads CPU time counts both
threads' work; the wall column is the run's wall time.

FLOP/s: ``torch.utils.flop_counter`` counts one denoiser call's matmul / conv / attention FLOPs;
divided by that call's CPU time (``--threads 1``) it is compared with a square fp32 matmul on the
same thread, through MKL (torch's ``@``) and through oneDNN; the faster of the two is the
practical ceiling of this CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.pipelines import IMAGE_SIDE, PROMPT, pipeline_folder  # noqa: E402
from diffblocks.pipeline import Pipeline  # noqa: E402

#: Node-path prefixes folded into one profile row each.
GROUPS = {"predict": "denoiser", "guidance": "CFG combine", "step": "sampler step",
          "scale_input": "sampler scale", "prepare_guidance": "guidance batching", "guider": "guidance batching",
          "added_cond": "guidance batching", "encode_prompt": "text encoders", "decode": "VAE decode"}


def _group(path: str) -> str:
    leaf = path.rsplit("/", 1)[-1]
    for prefix, group in GROUPS.items():
        if leaf.startswith(prefix):
            return group
    return "other nodes" if "/" not in path else "other loop nodes"


def profile(pipe: Pipeline, call: dict[str, Any], repeats: int) -> tuple[dict[str, float], float, float]:
    """Per-group CPU seconds of the fastest run, its total CPU and wall seconds."""
    plan = pipe.graph.compile(cache=False)
    best: tuple[dict[str, float], float, float] | None = None
    for i in range(repeats + 1):
        spent: dict[str, float] = defaultdict(float)
        last = [time.process_time()]

        def on_end(path: str, outputs: Any) -> None:
            now = time.process_time()
            spent[_group(path)] += now - last[0]
            last[0] = now

        inputs = {**call, "output_type": "np", "generator": torch.Generator().manual_seed(i)}
        t0, w0 = time.process_time(), time.perf_counter()
        plan.run(inputs, pipe.components, progress=False, cache=False, on_node_end=on_end)
        total, wall = time.process_time() - t0, time.perf_counter() - w0
        if i > 0 and (best is None or total < best[1]):
            best = (dict(spent), total, wall)
    assert best is not None
    return best


def denoiser_flops(pipe: Pipeline, call: dict[str, Any]) -> tuple[float, float]:
    """(FLOPs, CPU seconds) of one denoiser call, captured from a 1-step run."""
    from torch.utils.flop_counter import FlopCounterMode

    from diffblocks.models.kernels import cpu_kernels_enabled

    name = "transformer" if "transformer" in pipe.components else "unet"
    model = pipe.components[name]
    captured: dict[str, Any] = {}
    original = model.forward

    def capture(*args: Any, **kwargs: Any) -> Any:
        captured.setdefault("call", (args, kwargs))
        return original(*args, **kwargs)

    model.forward = capture
    try:
        pipe.graph.run({**call, "num_inference_steps": 1, "output_type": "latent"}, pipe.components,
                       progress=False, cache=False)
    finally:
        del model.forward
    args, kwargs = captured["call"]
    with torch.no_grad():
        # The counter knows aten's products, not oneDNN's: count on the stock ops (same math),
        # time on the default route.
        with FlopCounterMode(display=False) as counter, cpu_kernels_enabled(False):
            model(*args, **kwargs)
        best = float("inf")
        for _ in range(3):
            t0 = time.process_time()
            model(*args, **kwargs)
            best = min(best, time.process_time() - t0)
    return float(counter.get_total_flops()), best


def matmul_flops_per_second(n: int = 1024) -> tuple[float, float]:
    """An fp32 n x n x n product's FLOP/s on this thread: torch's ``a @ b`` (MKL sgemm) and
    oneDNN's (``diffblocks.models.kernels.linear``); the larger is the practical ceiling."""
    from diffblocks.models.kernels import linear

    a, b = torch.randn(n, n), torch.randn(n, n)
    rates = []
    for product in (lambda: a @ b, lambda: linear(a, b)):
        best = float("inf")
        for _ in range(5):
            t0 = time.process_time()
            product()
            best = min(best, time.process_time() - t0)
        rates.append(2 * n**3 / best)
    return rates[0], rates[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="+", default=["sd", "sdxl", "flux"])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "mid"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/diffblocks-bench"))
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, CPU {torch.backends.cpu.get_cpu_capability()}, {args.steps} steps, "
          f"best of {args.repeats} (process CPU time)\n")
    rows, flop_rows = [], []
    for size in args.sizes:
        for kind in args.kinds:
            folder = pipeline_folder(args.workdir, size, kind)
            pipe = Pipeline.from_pretrained(str(folder), torch_dtype=torch.float32)
            side = IMAGE_SIDE[size]
            call = {"prompt": PROMPT, "num_inference_steps": args.steps, "height": side, "width": side,
                    "guidance_scale": 3.5 if kind == "flux" else 5.0}
            for threads in args.threads:
                torch.set_num_threads(threads)
                spent, total, wall = profile(pipe, call, args.repeats)
                shares = ", ".join(f"{g} {s / total:.0%}" for g, s in sorted(spent.items(), key=lambda x: -x[1])
                                   if s / total >= 0.005)
                rows.append(f"| {size} {kind} | {threads} | {total * 1000:.0f} | {wall * 1000:.0f} | {shares} |")
                print(rows[-1], flush=True)
            torch.set_num_threads(1)
            flops, seconds = denoiser_flops(pipe, call)
            mkl, onednn = matmul_flops_per_second()
            peak = max(mkl, onednn)
            flop_rows.append(f"| {size} {kind} | {flops / 1e9:.2f} | {seconds * 1000:.1f} | "
                             f"{flops / seconds / 1e9:.1f} | {mkl / 1e9:.1f} / {onednn / 1e9:.1f} | "
                             f"{flops / seconds / peak:.0%} |")
            print(flop_rows[-1], flush=True)
    print("\n| preset | threads | CPU ms | wall ms | where the CPU time goes |\n|---|---|---|---|---|")
    print("\n".join(rows))
    print("\n| denoiser | GFLOP / call | CPU ms / call | GFLOP/s | fp32 1024² matmul GFLOP/s, MKL / oneDNN | fraction |"
          "\n|---|---|---|---|---|---|")
    print("\n".join(flop_rows))


if __name__ == "__main__":
    main()
