"""Finding and reading adapter files: a file, a folder, a Hub repo, or a state dict in memory.

Safe by default: ``.safetensors`` always; pickled ``.bin`` / ``.pt`` / ``.ckpt`` files only with
``allow_pickle=True``, and then through ``torch.load(weights_only=True)``. Every file read is
hashed (sha256) so the run that used it can be recorded and replayed.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["AdapterFile", "AdapterFileError", "DEFAULT_EMBEDDING_FILE", "DEFAULT_LORA_FILE", "read_adapter_file", "sha256_of"]

#: What ``load_lora_weights(folder)`` reads when no ``weight_name`` is given (diffusers' name).
DEFAULT_LORA_FILE = "pytorch_lora_weights.safetensors"
#: What ``load_textual_inversion(folder)`` reads when no ``weight_name`` is given.
DEFAULT_EMBEDDING_FILE = "learned_embeds.safetensors"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class AdapterFileError(ValueError):
    """An adapter file that cannot be found or read."""


@dataclass(frozen=True)
class AdapterFile:
    """Tensors read from an adapter file, where they came from, and the file's sha256."""

    tensors: dict[str, torch.Tensor]
    path: str
    sha256: str
    metadata: dict[str, str]


def sha256_of(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _state_dict_id(tensors: Mapping[str, torch.Tensor]) -> str:
    """A content hash for a state dict given in memory (so records and caches can tell two apart)."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(t.dtype).encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _locate(source: str, weight_name: str | None, default: str, hub: Mapping[str, Any]) -> Path:
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        target = path / (weight_name or default)
        if not target.is_file():
            present = sorted(p.name for p in path.iterdir() if p.suffix in (".safetensors", *_PICKLE_SUFFIXES))
            raise AdapterFileError(f"{target}: no such file; the folder holds {present or 'no weight files'}"
                                   + ("" if weight_name else "; pass weight_name=..."))
        return target
    if not _REPO_ID.match(source):
        raise AdapterFileError(f"{source}: no such file or folder")
    from diffblocks.hub import HubError, snapshot_download_pinned

    name = weight_name or default
    try:
        folder = snapshot_download_pinned(source, allow_patterns=[name], **hub)
    except HubError as err:
        raise AdapterFileError(f"{source}: not a local file or folder, and the Hub says: {err}") from err
    if not (folder / name).is_file():
        raise AdapterFileError(f"Hub repo {source}: no file {name!r}; pass weight_name=...")
    return folder / name


def read_adapter_file(
    source: str | os.PathLike[str] | Mapping[str, torch.Tensor],
    *,
    weight_name: str | None = None,
    default: str = DEFAULT_LORA_FILE,
    allow_pickle: bool = False,
    hub: Mapping[str, Any] | None = None,
) -> AdapterFile:
    """Read an adapter: a file path, a folder (``weight_name`` or ``default`` inside), a Hub repo
    id, or a state dict. ``hub`` holds huggingface_hub options (cache_dir, token, ...)."""
    if isinstance(source, Mapping):
        tensors = dict(source)
        if not all(isinstance(v, torch.Tensor) for v in tensors.values()):
            raise AdapterFileError("an adapter state dict must map names to tensors")
        return AdapterFile(tensors, "<state dict>", _state_dict_id(tensors), {})
    path = _locate(os.fspath(source), weight_name, default, hub or {})
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}
                metadata = dict(fh.metadata() or {})
        except Exception as err:  # safetensors raises several types for a damaged header
            raise AdapterFileError(f"{path}: not a readable safetensors file ({err})") from err
    elif path.suffix in _PICKLE_SUFFIXES:
        if not allow_pickle:
            raise AdapterFileError(f"{path}: a pickle file; pass allow_pickle=True to read it "
                                   "(loaded with torch.load(weights_only=True)), or convert it to .safetensors")
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise AdapterFileError(f"{path}: refused or unreadable by torch.load(weights_only=True): {err}") from err
        tensors, metadata = _flatten(loaded, path), {}
    else:
        raise AdapterFileError(f"{path}: unknown file type {path.suffix!r} (expected .safetensors, or a pickle "
                               "with allow_pickle=True)")
    return AdapterFile(tensors, str(path), sha256_of(path), metadata)


def _flatten(loaded: Any, path: Path) -> dict[str, Any]:
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise AdapterFileError(f"{path}: holds a {type(loaded).__name__}, not a dict of tensors")
    return dict(loaded)
