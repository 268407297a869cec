"""``diffblocks run --lora FILE[:WEIGHT] --embedding FILE[:TOKEN]``: adapters for one run.

The adapters become part of the run's settings (file, sha256, adapter name, weight), so the
PNG records them and ``--replay`` loads the same files again, refusing one whose sha256 changed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .errors import CliError

# The adapter modules import torch: imported in the hooks, so `diffblocks --help` stays instant.

__all__ = ["add_arguments", "apply", "parse_embedding", "parse_lora", "settings"]


def parse_lora(text: str) -> tuple[str, float]:
    """``FILE`` or ``FILE:WEIGHT`` (a path that exists as written wins over a split)."""
    path, sep, weight = text.rpartition(":")
    if Path(text).is_file() or not sep:
        return text, 1.0
    try:
        return path, float(weight)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--lora {text}: WEIGHT must be a number (FILE:0.8)") from None


def parse_embedding(text: str) -> tuple[str, str | None]:
    """``FILE`` or ``FILE:TOKEN``."""
    path, sep, token = text.rpartition(":")
    if Path(text).is_file() or not sep or not token:
        return text, None
    return path, token


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lora", action="append", default=[], metavar="FILE[:WEIGHT]",
                        help="load a LoRA file with a weight (default 1.0); repeatable")
    parser.add_argument("--embedding", action="append", default=[], metavar="FILE[:TOKEN]",
                        help="load a textual-inversion embedding (token: from the file by default); repeatable")


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The adapters of a run as recordable settings (empty when none are given)."""
    from ..adapters.files import sha256_of

    loras, embeddings, names = [], [], set()
    for text in getattr(args, "lora", None) or []:
        path, weight = parse_lora(text)
        if not Path(path).is_file():
            raise CliError(f"--lora {text}: no such file {path}")
        name, n = Path(path).stem, 1
        while name in names:
            n += 1
            name = f"{Path(path).stem}_{n}"
        names.add(name)
        loras.append({"file": str(Path(path).resolve()), "sha256": sha256_of(path), "adapter_name": name,
                      "weight": weight})
    for text in getattr(args, "embedding", None) or []:
        path, token = parse_embedding(text)
        if not Path(path).is_file():
            raise CliError(f"--embedding {text}: no such file {path}")
        embeddings.append({"file": str(Path(path).resolve()), "sha256": sha256_of(path), "token": token})
    return {"loras": loras, "embeddings": embeddings} if loras or embeddings else {}


def configure(pipe: Any, run_settings: dict[str, Any]) -> None:
    """The ``run`` hook (see ``diffblocks.cli.run``): apply the recorded LoRAs and embeddings."""
    apply(pipe, run_settings)


def apply(pipe: Any, run_settings: dict[str, Any]) -> None:
    """Load the adapters recorded in ``run_settings`` into ``pipe`` (no-op when there are none)."""
    from ..adapters.record import apply_adapter_record

    if run_settings.get("loras") or run_settings.get("embeddings"):
        try:
            apply_adapter_record(pipe, run_settings)
        except (ValueError, KeyError) as err:
            raise CliError(str(err)) from None
