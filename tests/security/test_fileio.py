"""Bounded reads and atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from diffblocks.fileio import (
    FileReadError,
    FileWriteError,
    atomic_folder,
    atomic_write_text,
    read_bytes_bounded,
    read_text_bounded,
)


def test_bounded_read_refuses_devices_fifos_folders_and_big_files(tmp_path: Path) -> None:
    with pytest.raises(FileReadError, match="not a regular file"):
        read_bytes_bounded("/dev/zero")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(FileReadError, match="not a regular file"):
        read_bytes_bounded(fifo)  # would block forever with a plain open()
    with pytest.raises(FileReadError, match="not a regular file"):
        read_bytes_bounded(tmp_path)
    big = tmp_path / "big.json"
    big.write_bytes(b"x" * 101)
    with pytest.raises(FileReadError, match="larger than 100 bytes"):
        read_bytes_bounded(big, limit=100)
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    with pytest.raises(FileReadError, match="not UTF-8"):
        read_text_bounded(tmp_path / "latin1.txt")
    with pytest.raises(FileReadError, match="does not exist"):
        read_text_bounded(tmp_path / "missing.json")


def test_atomic_text_write_keeps_the_old_file_when_encoding_fails(tmp_path: Path) -> None:
    target = tmp_path / "graph.json"
    target.write_text("old")
    with pytest.raises(FileWriteError, match="not valid Unicode"):
        atomic_write_text(target, "bad \ud800 surrogate")
    assert target.read_text() == "old"
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.json"]


def test_atomic_folder_swaps_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "pipe"
    target.mkdir()
    (target / "a.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as work:
            (work / "a.txt").write_text("new")
            raise RuntimeError("disk full halfway")
    assert (target / "a.txt").read_text() == "old"
    with atomic_folder(target) as work:
        (work / "b.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_atomic_writes_get_ordinary_permissions(tmp_path: Path) -> None:
    new = atomic_write_text(tmp_path / "new.json", "{}")
    assert new.stat().st_mode & 0o777 == 0o666 & ~_current_umask()
    old = tmp_path / "old.json"
    old.write_text("x")
    old.chmod(0o640)
    atomic_write_text(old, "y")
    assert old.stat().st_mode & 0o777 == 0o640


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
