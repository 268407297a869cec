"""What a ``diffblocks run`` PNG records, and reading it back safely for ``--replay``.

* The graph chunk is graph JSON text, never a path: text that does not start with ``{`` is refused.
* The PNG is read with a bounded read of a regular file; its inputs chunk must be a JSON object
  whose known keys have the right types.
* An init image / mask is recorded as its resolved path plus the SHA-256 of its bytes, so a
  replay from another directory finds it, and says so when it is missing or has changed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from pathlib import Path
from typing import Any

from .. import __version__
from ..fileio import read_bytes_bounded
from ..pngmeta import PNG_KEYS, save_png
from .errors import CliError

__all__ = [
    "png_metadata_keys", "read_png_metadata", "graph_from_png", "replay_settings", "image_settings",
    "load_image", "save_pngs", "PNG_READ_LIMIT", "IMAGE_READ_LIMIT",
]

_KEYS = PNG_KEYS
#: A replayed PNG and an init image are read whole; these bound the read.
PNG_READ_LIMIT = 256 * 1024 * 1024
IMAGE_READ_LIMIT = 256 * 1024 * 1024

# Key -> accepted JSON types of a recorded setting (None is always accepted: "not given").
_SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,), "prompt": (str, list), "negative_prompt": (str, list), "num_inference_steps": (int,),
    "guidance_scale": (int, float), "guidance_rescale": (int, float), "seed": (int,), "height": (int,),
    "width": (int,), "num_images_per_prompt": (int,), "eta": (int, float), "clip_skip": (int,),
    "scheduler": (str,), "strength": (int, float), "dtype": (str,), "threads": (int,),
    "image": (str,), "image_sha256": (str,), "mask_image": (str,), "mask_image_sha256": (str,),
}
_DTYPES = ("float32", "float16", "bfloat16")


def png_metadata_keys() -> dict[str, str]:
    """The PNG text-chunk keys: graph JSON, inputs JSON, version."""
    return dict(_KEYS)


def read_png_metadata(path: str | Path) -> dict[str, Any]:
    """``{"graph": str, "inputs": dict, "version": str}`` from a PNG written by ``diffblocks run``."""
    from PIL import Image

    data = read_bytes_bounded(path, PNG_READ_LIMIT, what="PNG")
    try:
        with Image.open(io.BytesIO(data)) as image:
            text = dict(getattr(image, "text", {}) or {})
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:  # PIL: not a readable PNG
        raise CliError(f"cannot read '{path}' as an image: {err}") from None
    missing = [k for k, key in _KEYS.items() if key not in text]
    if missing:
        raise CliError(f"{path} has no diffblocks metadata ({', '.join(missing)} missing)",
                       hint="--replay takes a PNG written by `diffblocks run`")
    try:
        inputs = json.loads(text[_KEYS["inputs"]])
    except ValueError as err:
        raise CliError(f"{path}: the {_KEYS['inputs']} chunk is not JSON ({err})") from None
    if not isinstance(inputs, dict):
        raise CliError(f"{path}: the {_KEYS['inputs']} chunk must be a JSON object, got {type(inputs).__name__}")
    return {"graph": text[_KEYS["graph"]], "inputs": inputs, "version": text[_KEYS["version"]]}


def graph_from_png(text: str, png: str | Path) -> Any:
    """The graph in a PNG's graph chunk: JSON text only (a path there is refused, not opened)."""
    from .inspect import graph_from_text

    return graph_from_text(text, f"the {_KEYS['graph']} chunk of {png}")


def replay_settings(inputs: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The recorded settings, type-checked, with ``--image`` / ``--mask`` / ``--threads`` /
    ``--model`` from the command line taking the place of the recorded ones."""
    problems = []
    for key, value in inputs.items():
        types = _SETTING_TYPES.get(key)
        if value is None or types is None:
            continue  # keys from option modules are checked by them
        if isinstance(value, bool) or not isinstance(value, types):
            problems.append(f"{key} is {type(value).__name__}")
    if "model" not in inputs or not isinstance(inputs.get("model"), str):
        problems.append("model is missing")
    if inputs.get("dtype") not in (None, *_DTYPES):
        problems.append(f"dtype {inputs['dtype']!r} is not one of {', '.join(_DTYPES)}")
    if problems:
        raise CliError(f"the PNG's inputs are not valid: {'; '.join(problems)}")
    settings = dict(inputs)
    if getattr(args, "model", None):
        settings["model"] = args.model
    if getattr(args, "threads", None):
        settings["threads"] = args.threads
    for key, flag in (("image", "image"), ("mask_image", "mask")):
        given = getattr(args, flag, None)
        if given:
            recorded = settings.get(f"{key}_sha256")
            settings.update(image_settings(key, given))
            settings[f"{key}_recorded_sha256"] = recorded
    return settings


def image_settings(key: str, path: str | None) -> dict[str, Any]:
    """``{key: resolved path, key_sha256: hash}`` for an image given on the command line."""
    if path is None:
        return {key: None}
    resolved = Path(path).expanduser().resolve()
    data = read_bytes_bounded(resolved, IMAGE_READ_LIMIT, what=f"--{'mask' if key == 'mask_image' else 'image'} file")
    return {key: str(resolved), f"{key}_sha256": hashlib.sha256(data).hexdigest()}


def load_image(settings: dict[str, Any], key: str, base: Path | None = None) -> Any:
    """The PIL image ``settings[key]`` names, checked against its recorded hash. A relative path
    (older PNGs) is looked for beside the replayed PNG, then in the current directory."""
    from PIL import Image

    recorded = settings.get(key)
    if recorded is None:
        return None
    flag = "--mask" if key == "mask_image" else "--image"
    candidates = [Path(recorded).expanduser()]
    if not candidates[0].is_absolute() and base is not None:
        candidates.insert(0, base / recorded)
    path = next((c for c in candidates if c.exists()), None)
    if path is None:
        raise CliError(f"{key} '{recorded}' does not exist",
                       hint=f"pass {flag} PATH (with --replay: a copy of the image the PNG was made from)")
    data = read_bytes_bounded(path, IMAGE_READ_LIMIT, what=f"{flag} file")
    digest = hashlib.sha256(data).hexdigest()
    want = settings.get(f"{key}_recorded_sha256") or settings.get(f"{key}_sha256")
    if want and digest != want:
        if f"{key}_recorded_sha256" in settings:
            import warnings

            warnings.warn(f"{flag} {path} is not the image the PNG was made from (SHA-256 differs); the result will differ")
        else:
            raise CliError(f"{key} '{path}' has changed since the PNG was made (SHA-256 {digest[:12]}..., recorded {want[:12]}...)",
                           hint=f"pass {flag} PATH to replay with this image anyway")
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise CliError(f"cannot read {key} '{path}': {err}") from None


def save_pngs(images: list[Any], out: Path, graph_json: str, settings: dict[str, Any]) -> list[Path]:
    """Write the images with the graph, inputs and version in text chunks; returns the paths."""
    recorded = {k: v for k, v in settings.items() if not k.endswith("_recorded_sha256")}
    paths = [out] if len(images) == 1 else [out.with_name(f"{out.stem}-{i + 1}{out.suffix}") for i in range(len(images))]
    out.parent.mkdir(parents=True, exist_ok=True)
    for image, path in zip(images, paths):
        save_png(image, path, graph_json, recorded)
    return paths
