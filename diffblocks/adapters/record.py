"""Recording the adapters a pipeline ran with, and applying a record again.

A record is plain JSON: one entry per LoRA (file, sha256, adapter name, weight) and per
embedding (file, sha256, token). ``diffblocks run`` stores it in the PNG it writes and
``--replay`` applies it; ``Pipeline.save_pretrained`` writes it as ``adapters.json`` with a
copy of each adapter file under ``adapters/``. Applying checks every file's sha256, so a
replay never silently uses a different LoRA than the one recorded.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from diffblocks.adapters.files import AdapterFileError, sha256_of
from diffblocks.adapters.state import lora_record
from diffblocks.fileio import atomic_write_text

__all__ = ["ADAPTER_RECORD_FILE", "adapter_record", "apply_adapter_record", "write_adapter_record"]

ADAPTER_RECORD_FILE = "adapters.json"


def adapter_record(components: Any) -> dict[str, list[dict[str, Any]]]:
    """``{"loras": [...], "embeddings": [...]}`` for what is loaded in ``components`` (a manager)."""
    loras, embeddings = [], []
    for item in getattr(components, "loaded_adapters", []):
        if item.kind == "lora":
            loras.append({"file": item.path, "sha256": item.sha256, "adapter_name": item.adapter_name,
                          "weight": item.weight})
        else:
            embeddings.append({"file": item.path, "sha256": item.sha256, "token": item.adapter_name,
                               "tokens": list(item.tokens)})
    return {"loras": loras, "embeddings": embeddings}


def write_adapter_record(folder: Path, components: Any, saved_weights: Sequence[str] = ()) -> Path | None:
    """Write ``adapters.json`` (and copies of the adapter files) into a saved pipeline folder.

    ``saved_weights`` names the components whose weights were written: one still carrying LoRA
    layers is an error (its state dict would not load as a plain model); fuse and unload, or
    unload, first.
    """
    for name in saved_weights:
        obj = components[name]
        if isinstance(obj, torch.nn.Module) and lora_record(obj) is not None:
            raise ValueError(f"component {name!r} has LoRA layers: save_weights would write peft's layer names. "
                             "Call fuse_lora() and unload_lora_weights() to bake the LoRA in, or "
                             "unload_lora_weights() to save without it.")
    record = adapter_record(components)
    if not record["loras"] and not record["embeddings"]:
        return None
    for entry in record["loras"] + record["embeddings"]:
        source = Path(entry["file"])
        if source.is_file():
            target = folder / "adapters" / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.resolve() != target.resolve():
                shutil.copyfile(source, target)
            entry["file"] = f"adapters/{source.name}"
    return atomic_write_text(folder / ADAPTER_RECORD_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")


def _checked(entry: Mapping[str, Any], base: Path | None) -> Path:
    path = Path(entry["file"])
    if not path.is_absolute() and base is not None and (base / path).is_file():
        path = base / path
    if not path.is_file():
        raise AdapterFileError(f"recorded adapter file {entry['file']} is missing")
    digest = sha256_of(path)
    if entry.get("sha256") and digest != entry["sha256"]:
        raise AdapterFileError(f"{path}: sha256 {digest[:12]}... differs from the recorded {entry['sha256'][:12]}...; "
                               "this is not the file the record was made with")
    return path


def apply_adapter_record(target: Any, record: Mapping[str, Any], base: str | Path | None = None,
                         allow_pickle: bool = False) -> None:
    """Load the LoRAs and embeddings of ``record`` into ``target`` (a Pipeline or manager) with
    their weights; relative file names are looked up under ``base``."""
    folder = Path(base) if base is not None else None
    loras = list(record.get("loras") or [])
    for entry in record.get("embeddings") or []:
        target.load_textual_inversion(_checked(entry, folder), entry.get("token"), allow_pickle=allow_pickle)
    names = []
    for entry in loras:
        names.append(target.load_lora_weights(_checked(entry, folder), adapter_name=entry.get("adapter_name"),
                                              allow_pickle=allow_pickle))
    if names:
        target.set_adapters(names, [entry.get("weight", 1.0) for entry in loras])
