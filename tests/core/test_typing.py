"""`mypy --strict` passes on the block/graph core (the file list and settings are in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_mypy_strict_on_the_block_and_graph_core() -> None:
    pytest.importorskip("mypy", reason="mypy comes with the test extra")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_type_ignores_in_the_core() -> None:
    core = [REPO / "diffblocks" / "blocks" / f"{m}.py" for m in ("base", "function", "ports", "types", "errors", "context")]
    core += [p for p in (REPO / "diffblocks" / "graph").glob("*.py") if p.stem not in ("validate", "jsonio")]
    found = [f"{p.relative_to(REPO)}:{i}" for p in core for i, line in enumerate(p.read_text().splitlines(), 1) if "type: ignore" in line]
    assert not found, found
