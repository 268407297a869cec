"""The run's record on disk: one JSON line per finished row, written so that a kill at any moment
leaves only whole lines and whole images behind.

Each process appends to its own ``manifest.part-<rank>.jsonl`` (no two writers share a file);
a line is appended only after the row's PNG has been renamed into place, with one ``write``
call on an ``O_APPEND`` descriptor, so it is on disk whole or not at all. At the end the main
process merges every part (and the manifest of an earlier run) into ``manifest.jsonl``, sorted
by row, written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from diffblocks.fileio import atomic_write_text

__all__ = ["MANIFEST", "ManifestWriter", "image_name", "merge_manifests", "read_records"]

MANIFEST = "manifest.jsonl"
_PART = "manifest.part-{rank}.jsonl"


def image_name(row: int) -> str:
    """A row's file name: fixed by the row, so processes never collide and reruns overwrite."""
    return f"{row:06d}.png"


def read_records(out_dir: Path) -> dict[int, dict[str, Any]]:
    """The newest record of every row found in the manifest and its parts (torn lines skipped)."""
    records: dict[int, dict[str, Any]] = {}
    files = [out_dir / MANIFEST, *sorted(out_dir.glob(_PART.format(rank="*")))]
    for path in files:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("row"), int):
                previous = records.get(record["row"])
                if previous is None or record.get("status") == "ok" or previous.get("status") != "ok":
                    records[record["row"]] = record
    return records


def is_complete(out_dir: Path, record: Mapping[str, Any] | None) -> bool:
    """A row is done when its manifest line says ok and its image is there."""
    return bool(record and record.get("status") == "ok" and (out_dir / str(record.get("file"))).is_file())


class ManifestWriter:
    """Appends whole lines to this process's part file."""

    def __init__(self, out_dir: Path, rank: int) -> None:
        self.path = out_dir / _PART.format(rank=rank)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if os.fstat(self._fd).st_size:
            self._end_torn_line()

    def _end_torn_line(self) -> None:
        # A line cut by a crash of an older writer would glue onto the next one: start afresh.
        with open(self.path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                os.write(self._fd, b"\n")

    def append(self, record: Mapping[str, Any]) -> None:
        line = (json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
        os.write(self._fd, line)
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def merge_manifests(out_dir: Path, rows: Iterable[int] | None = None) -> list[dict[str, Any]]:
    """Write ``manifest.jsonl`` from every part (sorted by row), then remove the parts."""
    records = read_records(out_dir)
    keep = sorted(records) if rows is None else sorted(set(rows) & set(records))
    ordered = [records[r] for r in keep]
    text = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in ordered)
    atomic_write_text(out_dir / MANIFEST, text)
    for part in out_dir.glob(_PART.format(rank="*")):
        part.unlink(missing_ok=True)
    return ordered
