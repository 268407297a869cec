"""Which files of a repo one component needs (so a Hub download fetches nothing else)."""

from __future__ import annotations

import glob
import ntpath
import os
import posixpath
import re
from collections.abc import Iterable

__all__ = ["WEIGHT_SUFFIXES", "select_component_files", "folder_holds_component", "inside_problem", "looks_like_repo_id"]

SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
WEIGHT_SUFFIXES = SAFE_SUFFIXES + PICKLE_SUFFIXES + (".gguf", ".msgpack", ".h5", ".onnx", ".onnx_data")
# Files that mark a folder as holding a weight-less component (scheduler, tokenizer, processor).
_MARKER_FILES = (
    "config.json",
    "scheduler_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "spiece.model",
    "preprocessor_config.json",
)


def _variant_of(filename: str) -> str | None:
    """The variant tag in a weight file name, or None for the plain file.

    ``diffusion_pytorch_model.fp16.safetensors`` and (sharded)
    ``diffusion_pytorch_model.fp16-00001-of-00002.safetensors`` are variant ``fp16``;
    ``model-00001-of-00002.safetensors`` is not a variant.
    """
    parts = filename.split(".")
    if len(parts) < 3:
        return None
    return parts[-2].split("-")[0]


def _pick_weights(names: list[str], variant: str | None) -> list[str]:
    def of(kind: tuple[str, ...], want: str | None) -> list[str]:
        return [n for n in names if n.endswith(kind) and _variant_of(n.rsplit("/", 1)[-1]) == want]

    for want in ([variant, None] if variant else [None]):
        for kind in (SAFE_SUFFIXES, PICKLE_SUFFIXES):
            chosen = of(kind, want)
            if chosen:
                return chosen
    return []


def select_component_files(
    repo_files: Iterable[str], subfolder: str | None, variant: str | None = None, extra: Iterable[str] = ()
) -> list[str]:
    """Allow patterns for one component: its small files plus one set of weights.

    Weights: safetensors of ``variant``, else pickled weights of ``variant``, else the same
    without a variant. Only files directly in ``subfolder`` are taken (nested folders belong
    to other components). ``extra`` names more files wanted in the folder (remote code).
    Returns glob-escaped exact paths, usable as huggingface_hub ``allow_patterns``.
    """
    prefix = f"{subfolder.strip('/')}/" if subfolder else ""
    direct = [f for f in repo_files if f.startswith(prefix) and "/" not in f[len(prefix):]]
    weights = [f for f in direct if f.endswith(WEIGHT_SUFFIXES)]
    wanted = {prefix + e for e in extra}
    small = [f for f in direct if f not in weights and (not f.endswith(".py") or f in wanted)]
    return [glob.escape(f) for f in sorted(small) + sorted(_pick_weights(weights, variant))]


def folder_holds_component(folder: str, subfolder: str | None) -> bool:
    """True when ``folder/subfolder`` exists and holds weights or a config/tokenizer file."""
    import os

    path = os.path.join(folder, subfolder or "")
    if not os.path.isdir(path):
        return False
    names = os.listdir(path)
    return any(n.endswith(WEIGHT_SUFFIXES) or n in _MARKER_FILES for n in names)


_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def looks_like_repo_id(text: str) -> bool:
    """``"org/name"`` or ``"name"``: a Hub repo id, never a path (no ``..``, no leading ``.``)."""
    return _REPO_ID.fullmatch(text) is not None and ".." not in text


def inside_problem(relative: str) -> str | None:
    """Why ``relative`` (a subfolder or a path in a folder's own index) would leave that folder,
    or None when it stays inside: absolute paths, ``..`` parts, backslashes and NUL are refused."""
    if not relative:
        return None
    if "\0" in relative or "\\" in relative:
        return "holds a backslash or NUL"
    if posixpath.isabs(relative) or ntpath.isabs(relative) or relative.startswith("~"):
        return "is an absolute path"
    if ".." in relative.split("/"):
        return "climbs out with '..'"
    return None

