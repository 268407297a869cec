"""``diffblocks batch``: one image per row of a prompt file, resumable, on one or many processes.

    diffblocks batch prompts.csv --out runs/sweep --steps 20 --batch-size 4
    accelerate launch --num_processes 2 -m diffblocks.cli batch prompts.csv --out runs/sweep

Columns are checked before any weight loads; rerunning the same command finishes what is left.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    from diffblocks.batch.rows import COLUMNS

    p = sub.add_parser("batch", help="generate one image per row of a prompt file (.txt, .jsonl, .csv)",
                       description="Columns: " + ", ".join(COLUMNS) + ". Options below are defaults for every row.")
    p.add_argument("prompts", metavar="PROMPTS", help=".txt (one prompt a line), .jsonl or .csv")
    p.add_argument("graph", nargs="?", default=None, metavar="PRESET|GRAPH.json",
                   help="preset name or graph file; default: from the model's index")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (PNGs, manifest.jsonl, grid.png)")
    p.add_argument("--model", default=None, help="model folder or Hub repo id (default: the shipped tiny-shapes model)")
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--steps", type=int, default=None, help="number of inference steps")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale")
    p.add_argument("--seed", type=int, default=0, help="base seed: a row without a seed column uses seed + row index")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--scheduler", default=None, help='sampler name, e.g. "DPM++ 2M Karras"')
    p.add_argument("--strength", type=float, default=None)
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    p.add_argument("--batch-size", type=int, default=1, help="images per model call for rows with equal settings")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_batch)


def _defaults(args: argparse.Namespace) -> dict[str, Any]:
    values = {
        "negative_prompt": args.negative_prompt, "num_inference_steps": args.steps, "guidance_scale": args.guidance,
        "height": args.height, "width": args.width, "scheduler": args.scheduler, "strength": args.strength,
    }
    return {k: v for k, v in values.items() if v is not None}


def cmd_batch(args: argparse.Namespace) -> int:
    from diffblocks.batch import BatchInputError, Distribution, generate_many, read_rows

    from ..shipped import DEFAULT_MODEL

    if args.batch_size < 1:
        print(f"error: --batch-size must be at least 1, got {args.batch_size}", file=sys.stderr)
        return 2
    try:
        rows = read_rows(args.prompts, defaults=_defaults(args), base_seed=args.seed)
    except BatchInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import torch

    from diffblocks.pipeline import Pipeline, _graph_from

    dist, device = Distribution.from_accelerate()
    model = args.model or DEFAULT_MODEL
    graph = _graph_from(args.graph) if args.graph else None
    pipe = Pipeline.from_pretrained(model, preset=graph, torch_dtype=getattr(torch, args.dtype), device=device)
    report = generate_many(pipe, rows, args.out, batch_size=args.batch_size, distribution=dist,
                           run_settings={"model": model, "dtype": args.dtype}, progress=not args.quiet)
    if dist.is_main:
        failed = {r["row"]: r.get("error") for r in report.manifest if r.get("status") != "ok"}
        done = len(report.manifest) - len(failed)
        print(f"{done} of {len(rows)} images in {args.out} (manifest.jsonl, grid.png)")
        for row, error in sorted(failed.items()):
            print(f"row {row} failed: {error}", file=sys.stderr)
        return 1 if failed else 0
    return 0
