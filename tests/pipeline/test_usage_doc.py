"""docs/usage.md is true: its Python examples run (in order, one namespace, on the shipped model),
its samplers table is the one in diffblocks.schedulers.names, its CLI flags exist (issue 14 item 9)."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

from diffblocks.cli import build_parser
from diffblocks.schedulers.names import COMFYUI_ALIASES, SAMPLER_NAMES
from diffblocks.shipped import DEFAULT_MODEL, shipped_model_path

USAGE = Path(__file__).resolve().parents[2] / "docs" / "usage.md"


def _section_rows(title: str) -> list[list[str]]:
    text = USAGE.read_text()
    section = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("|---")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]


def test_usage_python_examples_run(tmp_path, monkeypatch):
    try:
        shipped_model_path(DEFAULT_MODEL)
    except FileNotFoundError:
        pytest.skip("no shipped model in this checkout")
    blocks = re.findall(r"```python\n(.*?)```", USAGE.read_text(), flags=re.S)
    assert len(blocks) >= 8, "usage.md should show its Python examples"
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "usage_examples.py"
    script.write_text("\n".join(blocks))
    scope = runpy.run_path(str(script))
    assert scope["out"].images.shape == (4, 64, 64, 3)
    assert (tmp_path / "tiny-copy" / "model_index.json").is_file()
    assert scope["again"].graph.nodes["denoise"].body.nodes["guidance"].name == "apply_apg"


def test_samplers_table_is_the_code_table():
    rows = {row[0].strip("`"): row for row in _section_rows("Samplers")}
    assert set(rows) == set(SAMPLER_NAMES)
    for name, (class_name, overrides) in SAMPLER_NAMES.items():
        row = rows[name]
        assert row[3].strip("`") == class_name, name
        config = ", ".join(f"{k}={v!r}" for k, v in overrides.items()) or "—"
        assert row[4] == config, name
        for alias, target in COMFYUI_ALIASES.items():
            if target == name:
                assert f"`{alias}`" in row[2], (name, alias)


def test_cli_flags_in_the_table_exist():
    run = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    known = {opt for action in run._actions for opt in action.option_strings}
    flags = [f for row in _section_rows("The command line") for f in re.findall(r"`(--[a-z-]+)", row[0])]
    assert len(flags) >= 15
    assert set(flags) <= known, set(flags) - known
    for wanted in ("--num-images-per-prompt", "--eta", "--clip-skip", "--guidance-rescale", "--threads"):
        assert wanted in flags
