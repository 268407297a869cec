"""Reading a single checkpoint file: safetensors by default, pickles only when allowed.

`Checkpoint` gives keys and shapes without reading tensors (safetensors headers), so a file can
be recognised and checked before any weight is loaded. Pickled files (``.ckpt``, ``.pt``,
``.pth``, ``.bin``) run code when unpickled by a plain ``torch.load``; they are refused unless
``allow_pickle=True``, and then read with ``torch.load(weights_only=True)``, which refuses
anything but tensors and plain containers without executing it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

__all__ = ["Checkpoint", "CheckpointError", "PICKLE_SUFFIXES", "SAFE_SUFFIXES", "lora_evidence"]

SAFE_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")

#: key shapes that only LoRA / LyCORIS adapter files have
_LORA_PATTERNS = (
    re.compile(r"^lora_(unet|te\d?)_"),
    re.compile(r"\.lora_(down|up|A|B)\.weight$"),
    re.compile(r"\.(lora_mid|hada_w1_a|lokr_w1)\b"),
)


class CheckpointError(ValueError):
    """A file that is not a loadable checkpoint; the message names the file and what was expected."""


def lora_evidence(keys: list[str]) -> list[str]:
    """Up to three keys that mark the file as a LoRA adapter (empty when none do)."""
    return [k for k in keys if any(p.search(k) for p in _LORA_PATTERNS)][:3]


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Training checkpoints nest the weights under ``state_dict`` (Lightning) or ``model``."""
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping) and not isinstance(obj.get(key), torch.Tensor):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, expected a dict of tensors")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


class Checkpoint(Mapping[str, torch.Tensor]):
    """One weight file as a read-only mapping ``key -> tensor``; ``shape(key)`` reads no data."""

    def __init__(self, path: str | os.PathLike[str], *, allow_pickle: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: no such file")
        suffix = self.path.suffix.lower()
        self.metadata: dict[str, str] = {}
        self._tensors: dict[str, torch.Tensor] | None = None
        self._file: Any = None
        if suffix in PICKLE_SUFFIXES:
            if not allow_pickle:
                raise CheckpointError(
                    f"{self.path}: is a pickle ({suffix}), which can run code when loaded; refused. Use a "
                    ".safetensors file, or pass allow_pickle=True for a file you trust (it is then read "
                    "with torch.load(weights_only=True))"
                )
            try:
                obj = torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)
            except Exception as e:  # noqa: BLE001 - torch raises many types for unsafe or damaged pickles
                raise CheckpointError(f"{self.path}: refused by torch.load(weights_only=True): {e}") from None
            self._tensors = _unwrap(obj, self.path)
            self._keys = list(self._tensors)
            return
        try:
            self._file = safe_open(str(self.path), framework="pt", device="cpu")
            self._keys = list(self._file.keys())
            self.metadata = dict(self._file.metadata() or {})
        except (SafetensorError, OSError) as e:
            raise CheckpointError(
                f"{self.path}: not a readable safetensors file ({e}); expected a .safetensors checkpoint"
                + (" (GGUF files load with load_gguf)" if suffix == ".gguf" else "")
            ) from None

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], name: str = "<tensors>",
                     metadata: Mapping[str, str] | None = None) -> "Checkpoint":
        """A checkpoint over tensors already in memory (e.g. a state dict, or a layout on ``meta``)."""
        self = cls.__new__(cls)
        self.path = Path(name)
        self.metadata = dict(metadata or {})
        self._file = None
        self._tensors = dict(tensors)
        self._keys = list(self._tensors)
        return self

    def keys(self) -> list[str]:  # type: ignore[override]
        return list(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        if self._tensors is not None:
            return key in self._tensors
        return key in self._keyset

    @property
    def _keyset(self) -> set[str]:
        cached = self.__dict__.get("_keyset_cache")
        if cached is None:
            cached = self.__dict__["_keyset_cache"] = set(self._keys)
        return cached

    def __getitem__(self, key: str) -> torch.Tensor:
        if self._tensors is not None:
            return self._tensors[key]
        if key not in self._keyset:
            raise KeyError(key)
        return self._file.get_tensor(key)

    def shape(self, key: str) -> tuple[int, ...] | None:
        """The shape of ``key`` without reading it; None when the key is absent."""
        if key not in self:
            return None
        if self._tensors is not None:
            return tuple(self._tensors[key].shape)
        return tuple(self._file.get_slice(key).get_shape())

    def check_not_lora(self, expected: str) -> None:
        """Raise the "this is a LoRA" error when the keys are an adapter's."""
        evidence = lora_evidence(self._keys)
        if evidence:
            raise CheckpointError(
                f"{self.path}: is a LoRA adapter (keys like {', '.join(evidence)}), not {expected}; "
                "load it onto a pipeline as a LoRA instead"
            )
