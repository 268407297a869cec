"""Step caches: speed-up and image error vs uncached, ours and diffusers' hooks side by side.

    python bench/caching.py                      # shipped tiny-shapes + mid SD / SDXL / Flux, 1 thread
    python bench/caching.py --sizes shipped --eval-prompts 20   # + the shapes checker's accuracy
    python bench/caching.py --quick              # shipped model only, 2 repeats (a smoke run)

For each model every variant (uncached, then each cache at its settings) runs in ONE process,
alternating round by round, ``--repeats`` rounds, best kept; times are process CPU time on one
thread (a shared machine only adds wall time). Errors are against the same library's uncached
image at the same seed: PSNR (images in [0, 1]) and max abs difference.

* ours: the preset graph from the folder, the denoiser call swapped with ``with_step_cache``;
  memoisation is off, so every run does all the work;
* diffusers (Flux only, where it has hooks for the transformer): ``transformer.enable_cache``
  with ``FirstBlockCacheConfig(threshold)``, ``MagCacheConfig`` (Flux.1's published magnitude
  ratios: fitted on the real model, so on random weights it is only a timing reference) and
  ``TaylorSeerCacheConfig(cache_interval)``.

The mid-size folders are bench/pipelines.py's (built on first use under ``--workdir``).
On the shipped model, ``--eval-prompts N`` also scores the first N of the shapes checker's 60
evaluation prompts with and without each cache.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.pipelines import PROMPT, pipeline_folder  # noqa: E402
from diffblocks.pipeline import Pipeline  # noqa: E402
from diffblocks.presets import load_preset  # noqa: E402
from diffblocks.presets.stages.caching import with_step_cache  # noqa: E402

SHIPPED = ROOT / "diffblocks" / "assets" / "tiny-shapes"
#: (label, kind, config) per denoiser family; thresholds chosen for ~2x fewer model blocks.
OUR_CACHES: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
    "unet": [("deepcache N=2", "deepcache", {"interval": 2, "depth": 0}),
             ("deepcache N=3", "deepcache", {"interval": 3, "depth": 0}),
             ("deepcache N=3 depth 1", "deepcache", {"interval": 3, "depth": 1}),
             ("fbcache 0.15", "fbcache", {"threshold": 0.15, "depth": 0}),
             ("fbcache 0.3", "fbcache", {"threshold": 0.3, "depth": 0}),
             ("teacache 0.5", "teacache", {"threshold": 0.5, "depth": 0}),
             ("teacache 1.0", "teacache", {"threshold": 1.0, "depth": 0})],
    "transformer": [("fbcache 0.15", "fbcache", {"threshold": 0.15}), ("fbcache 0.3", "fbcache", {"threshold": 0.3}),
                    ("fbcache 0.5", "fbcache", {"threshold": 0.5}), ("teacache 0.15", "teacache", {"threshold": 0.15}),
                    ("teacache 0.3", "teacache", {"threshold": 0.3}), ("teacache 0.6", "teacache", {"threshold": 0.6})],
}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


class Ours:
    """Our preset graph on a folder; ``variant(kind, config)`` is the graph with a cache swapped in."""

    def __init__(self, folder: Path, preset: str | None, call: dict[str, Any]) -> None:
        self.pipe = Pipeline.from_pretrained(str(folder), preset=preset, torch_dtype=torch.float32)
        self.call = call
        self.base = self.pipe.graph
        self.denoiser = "transformer" if "transformer" in self.pipe.components else "unet"

    def variant(self, kind: str | None, config: dict[str, Any]) -> Callable[[int], tuple[np.ndarray, dict]]:
        graph = self.base if kind is None else with_step_cache(load_preset_like(self.base), kind, **config)
        plan = graph.compile(cache=False)

        def run(seed: int) -> tuple[np.ndarray, dict]:
            inputs = {**self.call, "output_type": "np", "generator": torch.Generator().manual_seed(seed)}
            images = plan.run(inputs, self.pipe.components, progress=False, cache=False)["images"]
            counts = next(iter(plan.last_run_report.counters.values()), {})
            return np.asarray(images), counts
        return run


def load_preset_like(graph: Any) -> Any:
    """A fresh copy of ``graph`` (a cache swap must not touch the uncached one)."""
    return type(graph).from_dict(graph.to_dict())


class DiffusersFlux:
    """diffusers' FluxPipeline on the folder; a variant enables one cache hook on the transformer."""

    def __init__(self, folder: Path, call: dict[str, Any]) -> None:
        import diffusers

        self.pipe = diffusers.FluxPipeline.from_pretrained(str(folder))
        self.pipe.set_progress_bar_config(disable=True)
        self.call = call

    def variant(self, label: str) -> Callable[[int], tuple[np.ndarray, dict]]:
        from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig
        from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

        steps = self.call["num_inference_steps"]
        configs = {
            "uncached": None,
            "FBC 0.15": FirstBlockCacheConfig(threshold=0.15), "FBC 0.3": FirstBlockCacheConfig(threshold=0.3),
            "FBC 0.5": FirstBlockCacheConfig(threshold=0.5),
            "MagCache 0.06": MagCacheConfig(threshold=0.06, num_inference_steps=steps, mag_ratios=FLUX_MAG_RATIOS),
            "TaylorSeer N=2": TaylorSeerCacheConfig(cache_interval=2, disable_cache_before_step=1,
                                                    taylor_factors_dtype=torch.float32),
        }
        config = configs[label]
        transformer = self.pipe.transformer

        def run(seed: int) -> tuple[np.ndarray, dict]:
            if config is not None:
                transformer.enable_cache(config)
            try:
                out = self.pipe(**self.call, output_type="np", generator=torch.Generator().manual_seed(seed))
            finally:
                if config is not None:
                    transformer.disable_cache()
            return np.asarray(out.images), {}
        return run

    LABELS = ("uncached", "FBC 0.15", "FBC 0.3", "FBC 0.5", "MagCache 0.06", "TaylorSeer N=2")


def measure(variants: dict[str, Callable[[int], tuple[np.ndarray, dict]]], repeats: int) -> dict[str, dict[str, Any]]:
    """Alternate the variants ``repeats`` rounds (plus a warm-up); best CPU time and the last image."""
    results: dict[str, dict[str, Any]] = {k: {"seconds": math.inf} for k in variants}
    for round_ in range(repeats + 1):
        for label, run in variants.items():
            t0 = time.process_time()
            image, counts = run(0)
            dt = time.process_time() - t0
            entry = results[label]
            entry["image"], entry["counts"] = image, counts
            if round_ > 0:
                entry["seconds"] = min(entry["seconds"], dt)
    return results


def table(title: str, results: dict[str, dict[str, Any]]) -> str:
    base = results["uncached"]
    lines = [f"### {title}", "", "| variant | time (s) | speed-up | PSNR (dB) | max abs diff | blocks skipped |",
             "|---|---|---|---|---|---|"]
    for label, r in results.items():
        counts = r.get("counts") or {}
        skipped = (f"{counts['blocks_skipped']}/{counts['blocks_run'] + counts['blocks_skipped']}"
                   if counts else "")
        diff = float(np.abs(r["image"].astype(np.float64) - base["image"]).max())
        lines.append(f"| {label} | {r['seconds']:.3f} | {base['seconds'] / r['seconds']:.2f}x | "
                     f"{psnr(r['image'], base['image']):.1f} | {diff:.4f} | {skipped} |")
    return "\n".join(lines)


def shapes_accuracy(ours: Ours, n_prompts: int) -> str:
    """The shapes checker's accuracy on the first ``n_prompts`` evaluation prompts, per variant."""
    try:  # the shapes package may move to examples/
        from diffblocks.shapes.evaluate import evaluate, eval_prompts
    except ImportError:
        try:
            from examples.shapes.evaluate import evaluate, eval_prompts  # type: ignore[no-redef]
        except ImportError:
            return "(shapes checker not found: accuracy skipped)"
    prompts = eval_prompts()[:n_prompts]
    lines = [f"### shapes checker accuracy, first {len(prompts)} of {len(eval_prompts())} evaluation prompts", "",
             "| variant | colour | shape | position |", "|---|---|---|---|"]
    for label, kind, config in [("uncached", None, {})] + OUR_CACHES["unet"]:
        run = ours.variant(kind, config)

        def generate(texts: list[str], run=run) -> list[np.ndarray]:
            images = []
            for i, text in enumerate(texts):
                ours.call["prompt"] = text
                images.append(run(i)[0][0])
            return images
        acc = evaluate(generate, prompts).accuracy
        lines.append(f"| {label} | {acc['colour']:.1%} | {acc['shape']:.1%} | {acc['position']:.1%} |")
    ours.call["prompt"] = PROMPT
    return "\n".join(lines)


def bench_model(name: str, folder: Path, preset: str | None, call: dict[str, Any], repeats: int,
                with_diffusers: bool) -> list[str]:
    ours = Ours(folder, preset, call)
    variants = {"uncached": ours.variant(None, {})}
    for label, kind, config in OUR_CACHES[ours.denoiser]:
        variants[label] = ours.variant(kind, config)
    out = [table(f"{name}: ours", measure(variants, repeats))]
    if with_diffusers and ours.denoiser == "transformer":
        theirs = DiffusersFlux(folder, call)
        out.append(table(f"{name}: diffusers", measure({k: theirs.variant(k) for k in theirs.LABELS}, repeats)))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["shipped", "mid"], choices=["shipped", "tiny", "mid"])
    parser.add_argument("--kinds", nargs="+", default=["sd", "sdxl", "flux"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-prompts", type=int, default=0, help="score N shapes prompts on the shipped model")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/diffblocks-bench"))
    parser.add_argument("--no-diffusers", action="store_true")
    parser.add_argument("--quick", action="store_true", help="shipped model, 2 repeats, 10 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats, args.steps = ["shipped"], 2, 10
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), CPU {torch.backends.cpu.get_cpu_capability()}, "
          f"{args.steps} steps, best of {args.repeats} alternating rounds (process CPU time)\n")
    for size in args.sizes:
        if size == "shipped":
            call = {"prompt": "a red circle at the top left", "num_inference_steps": args.steps, "guidance_scale": 5.0}
            for text in bench_model("shipped tiny-shapes (SD 1.5 preset, 64x64)", SHIPPED, "sd15", call,
                                    args.repeats, False):
                print(text + "\n")
            if args.eval_prompts:
                print(shapes_accuracy(Ours(SHIPPED, "sd15", dict(call)), args.eval_prompts) + "\n")
            continue
        side = 64 if size == "tiny" else 192
        for kind in args.kinds:
            folder = pipeline_folder(args.workdir, size, kind)
            call = {"prompt": PROMPT, "num_inference_steps": args.steps, "height": side, "width": side,
                    "guidance_scale": 3.5 if kind == "flux" else 5.0}
            for text in bench_model(f"{size} {kind} ({side}x{side})", folder, None, call, args.repeats,
                                    not args.no_diffusers):
                print(text + "\n")


if __name__ == "__main__":
    main()
