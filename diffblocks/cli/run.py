"""``diffblocks run``: generate images from a preset or graph file, and replay a saved PNG.

Every PNG it writes carries, in text chunks, the graph that ran, the inputs, the seed and the
diffblocks version, so ``diffblocks run --replay image.png`` makes the same image again
(`diffblocks.cli.replay`). Flags for other features plug in through ``RUN_OPTION_MODULES``:
each module has ``add_arguments(parser)``, and may have ``settings(args) -> dict`` (values
recorded in the PNG), ``load_options(settings, dtype, load) -> load`` (keyword arguments for
loading the pipeline), ``prepare(pipe, settings)`` (graph and call-default changes, made before
the inputs are checked) and ``configure(pipe, settings)`` (after the check, before the run: the
place for anything that loads weights).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from .. import __version__
from ..shipped import DEFAULT_MODEL
from . import replay as replay_io
from .errors import CliError
from .run_hub import add_hub_arguments, graph_for_run, replay_graph

__all__ = [
    "register", "DEFAULT_MODEL", "RUN_OPTION_MODULES", "default_model_path", "read_png_metadata",
    "png_metadata_keys", "generate",
]

#: Modules adding flags to ``run`` (LoRA, Hub, single-file ...): see the module docstring.
RUN_OPTION_MODULES: list[str] = ["diffblocks.cli.run_adapters", "diffblocks.cli.run_control"]
DTYPES = ("float32", "float16", "bfloat16")
#: Pipeline input -> the flag that gives it, where the names differ.
_FLAGS = {"image": "--image", "mask_image": "--mask", "num_inference_steps": "--steps", "guidance_scale": "--guidance"}
read_png_metadata = replay_io.read_png_metadata
png_metadata_keys = replay_io.png_metadata_keys


def default_model_path() -> Path:
    """The small text-to-image model that ships with the package."""
    return Path(__file__).resolve().parents[1] / "assets" / "tiny-shapes"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def _option_modules() -> list[Any]:
    return [importlib.import_module(name) for name in RUN_OPTION_MODULES]


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="generate an image from a preset or graph file")
    p.add_argument("graph", nargs="?", default=None, metavar="PRESET|GRAPH.json|REPO_ID|DIR",
                   help="preset name (sd15, sd15-img2img, sdxl, ...), graph file, or graph repo / folder; "
                   "default: from the model's index")
    p.add_argument("--model", default=None, help=f"model folder or Hub repo id (default: {DEFAULT_MODEL}, the shipped model)")
    p.add_argument("--prompt", default=None)
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--steps", type=_positive_int, default=None, help="number of inference steps")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale")
    p.add_argument("--guidance-rescale", type=_fraction, default=None, help="rescale guided noise towards the conditional std (0..1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--height", type=_positive_int, default=None)
    p.add_argument("--width", type=_positive_int, default=None)
    p.add_argument("--num-images-per-prompt", type=_positive_int, default=None, help="images per prompt (out-1.png, ...)")
    p.add_argument("--eta", type=_fraction, default=None, help="DDIM eta: 0 deterministic, 1 DDPM-like noise")
    p.add_argument("--clip-skip", type=int, default=None, help="use the CLIP layer this many before the last")
    p.add_argument("--scheduler", default=None, help='sampler name, e.g. "DPM++ 2M Karras", "Euler a", "DDIM" (docs/usage.md)')
    p.add_argument("--image", default=None, help="init image (img2img / inpaint)")
    p.add_argument("--mask", default=None, help="mask image (inpaint; white = repaint)")
    p.add_argument("--strength", type=_fraction, default=None, help="img2img / inpaint: how much to change the image (0..1)")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="weights and compute dtype of every model (default float32: half precision is slow or unsupported on CPUs)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="CPU threads (default: picked from the model and image size; 1 for the shipped model)")
    p.add_argument("--out", default=None, help="output PNG, default out.png (several images: out-1.png, ...); "
                   "with --replay, IMAGE-replay.png")
    p.add_argument("--replay", default=None, metavar="IMAGE.png", help="re-run the graph and inputs stored in a PNG")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_hub_arguments(p)
    for module in _option_modules():
        module.add_arguments(p)
    p.set_defaults(func=cmd_run)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """What a run is, as plain JSON-able values (what the PNG records)."""
    settings = {
        "model": args.model or DEFAULT_MODEL,
        "prompt": args.prompt,
        "negative_prompt": args.negative_prompt,
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance,
        "guidance_rescale": args.guidance_rescale,
        "seed": args.seed,
        "height": args.height,
        "width": args.width,
        "num_images_per_prompt": args.num_images_per_prompt,
        "eta": args.eta,
        "clip_skip": args.clip_skip,
        "scheduler": args.scheduler,
        "strength": args.strength,
        "dtype": args.dtype,
        "threads": args.threads,
        **replay_io.image_settings("image", args.image),
        **replay_io.image_settings("mask_image", args.mask),
    }
    for module in _option_modules():
        if hasattr(module, "settings"):
            settings.update(module.settings(args))
    return settings


def generate(
    settings: dict[str, Any], graph: Any = None, *, progress: bool = True, base: Path | None = None, **load: Any
) -> tuple[list[Any], Any]:
    """Run one generation from ``settings`` (see `_settings`); returns (PIL images, pipeline).
    Every input is checked before any weight loads."""
    import torch

    from ..blocks.errors import GraphError
    from .run_single_file import load_pipeline

    call = {k: settings.get(k) for k in ("prompt", "negative_prompt", "num_inference_steps", "guidance_scale",
                                         "guidance_rescale", "height", "width", "num_images_per_prompt", "eta",
                                         "clip_skip", "strength", "seed")}
    call["image"] = replay_io.load_image(settings, "image", base)
    mask = replay_io.load_image(settings, "mask_image", base)
    call["mask_image"] = mask.convert("L") if mask is not None else None
    present = {k: v for k, v in call.items() if v is not None}
    dtype = getattr(torch, settings.get("dtype") or "float32")
    for module in _option_modules():
        if hasattr(module, "load_options"):  # e.g. components a replayed graph needs declared first
            load = module.load_options(settings, dtype, load)
    pipe = load_pipeline(settings["model"], preset=graph, torch_dtype=dtype, threads=settings.get("threads"),
                         revision=settings.get("revision"), **load)
    for module in _option_modules():
        if hasattr(module, "prepare"):  # graph and call-default changes, checked with the rest below
            module.prepare(pipe, settings)
    unknown = sorted(set(present) - set(pipe.input_names))
    if unknown:
        flags = ", ".join(_FLAGS.get(k, "--" + k.replace("_", "-")) for k in unknown)
        raise CliError(f"graph '{pipe.graph.name}' takes no {', '.join(unknown)} ({flags})")
    try:
        pipe.check_inputs(**present)  # a workflow's missing input is named before anything loads
    except GraphError as err:
        missing = [p.port for p in err.problems if p.port and "missing" in p.message]
        if missing:
            err.hint = "pass " + " and ".join(_FLAGS.get(m, "--" + m.replace("_", "-")) for m in missing)  # type: ignore[attr-defined]
        raise
    for module in _option_modules():
        if hasattr(module, "configure"):
            module.configure(pipe, settings)
    if settings.get("scheduler"):
        pipe.set_scheduler(settings["scheduler"])
    out = pipe(output_type="pil", progress=progress, **present)
    return list(out.images), pipe


def cmd_run(args: argparse.Namespace) -> int:
    base = None
    if args.replay:
        meta = replay_io.read_png_metadata(args.replay)
        if meta["version"] != __version__:
            print(f"note: {args.replay} was made by diffblocks {meta['version']}, this is {__version__}", file=sys.stderr)
        settings = replay_io.replay_settings(meta["inputs"], args)
        graph = replay_graph(meta, args)
        replay = Path(args.replay)
        base = replay.resolve().parent
        out = Path(args.out) if args.out else replay.with_name(replay.stem + "-replay.png")
    else:
        if args.prompt is None:
            raise CliError("--prompt is required (or --replay IMAGE.png)", hint='diffblocks run --prompt "a red circle on the left"')
        settings = _settings(args)
        graph = graph_for_run(args, settings)
        out = Path(args.out or "out.png")
    images, pipe = generate(settings, graph, progress=not args.quiet, base=base, trust_remote_code=args.trust_remote_code)
    for path in replay_io.save_pngs(images, out, pipe.graph.to_json(), settings):
        print(path)
    return 0
