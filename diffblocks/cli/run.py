"""``diffblocks run``: generate images from a preset or graph file, and replay a saved PNG.

Every PNG it writes carries, in text chunks, the graph that ran, the inputs, the seed and the
diffblocks version, so ``diffblocks run --replay image.png`` makes the same image again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .. import __version__
from . import run_control
from .run_hub import add_hub_arguments, graph_for_run, replay_graph

__all__ = ["register", "DEFAULT_MODEL", "default_model_path", "read_png_metadata", "png_metadata_keys"]

#: The name recorded in PNG metadata for the model shipped inside the package.
DEFAULT_MODEL = "diffblocks:tiny-shapes"
_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}
_KEYS = {"graph": "diffblocks:graph", "inputs": "diffblocks:inputs", "version": "diffblocks:version"}


def png_metadata_keys() -> dict[str, str]:
    """The PNG text-chunk keys: graph JSON, inputs JSON, version."""
    return dict(_KEYS)


def default_model_path() -> Path:
    """The small text-to-image model that ships with the package."""
    return Path(__file__).resolve().parents[1] / "assets" / "tiny-shapes"


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="generate an image from a preset or graph file")
    p.add_argument("graph", nargs="?", default=None, metavar="PRESET|GRAPH.json|REPO_ID|DIR",
                   help="preset name (sd15, sd15-img2img, sdxl, ...), graph file, or graph repo / folder; default: from the model's index")
    p.add_argument("--model", default=None, help="model folder or Hub repo id (default: the shipped tiny-shapes model)")
    p.add_argument("--prompt", default=None)
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--steps", type=int, default=None, help="number of inference steps")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--scheduler", default=None, help='sampler name, e.g. "DPM++ 2M Karras", "Euler a", "DDIM"')
    p.add_argument("--image", default=None, help="init image (img2img / inpaint)")
    p.add_argument("--mask", default=None, help="mask image (inpaint; white = repaint)")
    p.add_argument("--strength", type=float, default=None)
    p.add_argument("--dtype", choices=sorted(_DTYPES), default="float32",
                   help="weights and compute dtype (default float32: half precision is slow or unsupported on CPUs)")
    p.add_argument("--out", default=None, help="output PNG, default out.png (several images: out-1.png, ...); "
                   "with --replay, IMAGE-replay.png")
    p.add_argument("--replay", default=None, metavar="IMAGE.png", help="re-run the graph and inputs stored in a PNG")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_hub_arguments(p)
    run_control.add_arguments(p)
    p.set_defaults(func=cmd_run)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """What a run is, as plain JSON-able values (what the PNG records)."""
    return {
        "model": args.model or DEFAULT_MODEL,
        "prompt": args.prompt,
        "negative_prompt": args.negative_prompt,
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance,
        "seed": args.seed,
        "height": args.height,
        "width": args.width,
        "scheduler": args.scheduler,
        "image": args.image,
        "mask_image": args.mask,
        "strength": args.strength,
        "dtype": args.dtype,
    }


def _model_path(model: str) -> str:
    if model == DEFAULT_MODEL:
        path = default_model_path()
        if not (path / "model_index.json").is_file():
            raise SystemExit(f"error: the shipped model is missing at {path}; pass --model PATH_OR_REPO")
        return str(path)
    return model


def _load_image(path: str | None) -> Any:
    if path is None:
        return None
    from PIL import Image

    try:
        return Image.open(path).convert("RGB")
    except OSError as err:
        raise SystemExit(f"error: cannot read image {path}: {err}") from None


def generate(settings: dict[str, Any], graph: Any = None, *, progress: bool = True, **load: Any) -> tuple[list[Any], Any]:
    """Run one generation from ``settings`` (see `_settings`); returns (PIL images, pipeline)."""
    import torch

    from ..pipeline import Pipeline

    dtype = getattr(torch, _DTYPES[settings.get("dtype") or "float32"])
    load = run_control.control_components(settings, dtype, load)
    pipe = Pipeline.from_pretrained(_model_path(settings["model"]), preset=graph, torch_dtype=dtype, revision=settings.get("revision"), **load)
    if settings.get("scheduler"):
        pipe.set_scheduler(settings["scheduler"])
    call = {k: settings[k] for k in ("prompt", "negative_prompt", "num_inference_steps", "guidance_scale",
                                     "height", "width", "strength", "seed")}
    call["image"] = _load_image(settings.get("image"))
    mask = _load_image(settings.get("mask_image"))
    call["mask_image"] = mask.convert("L") if mask is not None else None
    present = {k: v for k, v in call.items() if v is not None}
    run_control.configure(pipe, settings)
    unknown = sorted(set(present) - set(pipe.input_names))
    if unknown:
        raise SystemExit(f"error: this graph takes no {', '.join(unknown)}")
    out = pipe(output_type="pil", progress=progress, **present)
    return list(out.images), pipe


def _save(images: list[Any], out: Path, graph_json: str, settings: dict[str, Any]) -> list[Path]:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(_KEYS["graph"], graph_json, zip=True)
    info.add_text(_KEYS["inputs"], json.dumps(settings, sort_keys=True))
    info.add_text(_KEYS["version"], __version__)
    paths = [out] if len(images) == 1 else [out.with_name(f"{out.stem}-{i + 1}{out.suffix}") for i in range(len(images))]
    out.parent.mkdir(parents=True, exist_ok=True)
    for image, path in zip(images, paths):
        tmp = path.with_name(path.name + ".tmp")
        image.save(tmp, format="PNG", pnginfo=info)
        tmp.replace(path)
    return paths


def read_png_metadata(path: str | Path) -> dict[str, Any]:
    """``{"graph": str, "inputs": dict, "version": str}`` from a PNG written by ``diffblocks run``."""
    from PIL import Image

    with Image.open(path) as image:
        text = dict(getattr(image, "text", {}) or {})
    missing = [k for k, key in _KEYS.items() if key not in text]
    if missing:
        raise SystemExit(f"error: {path} has no diffblocks metadata ({', '.join(missing)} missing)")
    return {"graph": text[_KEYS["graph"]], "inputs": json.loads(text[_KEYS["inputs"]]), "version": text[_KEYS["version"]]}


def cmd_run(args: argparse.Namespace) -> int:
    if args.replay:
        meta = read_png_metadata(args.replay)
        if meta["version"] != __version__:
            print(f"note: {args.replay} was made by diffblocks {meta['version']}, this is {__version__}", file=sys.stderr)
        settings, graph = meta["inputs"], replay_graph(meta, args)
        replay = Path(args.replay)
        out = Path(args.out) if args.out else replay.with_name(replay.stem + "-replay.png")
    else:
        if args.prompt is None:
            print("error: --prompt is required (or --replay IMAGE.png)", file=sys.stderr)
            return 2
        settings = {**_settings(args), **run_control.settings(args)}
        graph = graph_for_run(args, settings)
        out = Path(args.out or "out.png")
    images, pipe = generate(settings, graph, progress=not args.quiet, trust_remote_code=args.trust_remote_code)
    for path in _save(images, out, pipe.graph.to_json(), settings):
        print(path)
    return 0
