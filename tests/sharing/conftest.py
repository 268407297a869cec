"""Fixtures for the sharing tests: the local Hub and isolation of tests/components, a fresh block
registry per test (repo code registers blocks), and small graph repos with custom code."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.components.conftest import _isolate, hub  # noqa: F401
from tests.sharing import numeric  # noqa: F401  (registers the share_* numeric blocks)


def _registry_store() -> Any:
    """The module holding the name -> block dicts (``diffblocks.blocks.registry`` once the
    registry is split into machinery and discovery; ``diffblocks.registry.blocks`` before)."""
    from diffblocks.registry import blocks

    return blocks if hasattr(blocks, "_BLOCKS") else importlib.import_module("diffblocks.blocks.registry")


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Blocks registered by a repo's code disappear after the test."""
    from diffblocks.registry import blocks

    blocks.list_blocks()  # discover built-ins once, outside the snapshot
    store = _registry_store()
    monkeypatch.setattr(store, "_BLOCKS", dict(store._BLOCKS))
    monkeypatch.setattr(store, "_PREDICATES", dict(store._PREDICATES))
    yield


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private Hugging Face cache per test, so nothing is ever served from an earlier one."""
    folder = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))
    return folder


def code_file(marker: Path, block_name: str, factor: float = 3.0) -> str:
    """Python source of a repo file that writes ``marker`` when imported and registers a block."""
    return (
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('imported')\n"
        "from diffblocks.blocks import block\n\n"
        f"@block({block_name!r}, output_name='x')\n"
        "def custom(x: float) -> float:\n"
        f"    return x * {factor}\n"
    )


def custom_graph_json(block_name: str, code: list[str]) -> str:
    """A graph file using the custom block after share_inc: x -> (x + 1) * factor."""
    import json

    doc = {
        "format": "diffblocks.graph", "version": 1,
        "graph": {"name": "custom", "nodes": {"inc": {"block": "share_inc"}, "mine": {"block": block_name}},
                  "edges": [["inc.x", "mine.x"]],
                  "inputs": {"x": {"to": ["inc.x"], "default": 1.0}}, "outputs": {"x": "mine.x"}},
        "code": code,
    }
    return json.dumps(doc, indent=2)
