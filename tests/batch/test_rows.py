"""Prompt files: formats, column checks before loading, per-row seeds and per-row errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffblocks.batch import BatchInputError, read_rows, rows_from_records


def test_txt_jsonl_and_csv_give_the_same_rows(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("a red circle\n\n  a blue square  \n")
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps({"prompt": p}) for p in ("a red circle", "a blue square")))
    (tmp_path / "p.csv").write_text("prompt\na red circle\na blue square\n")
    settings = [[dict(r.settings) for r in read_rows(tmp_path / f"p.{ext}", base_seed=5)] for ext in ("txt", "jsonl", "csv")]
    assert settings[0] == settings[1] == settings[2] == [
        {"prompt": "a red circle", "seed": 5}, {"prompt": "a blue square", "seed": 6},
    ]


def test_columns_map_to_run_settings_and_override_defaults(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("prompt,seed,steps,guidance,size,scheduler,negative_prompt\nx,42,7,3.5,96x64,Euler a,blurry\ny,,,,,,\n")
    first, second = read_rows(path, defaults={"num_inference_steps": 20, "guidance_scale": 5.0}, base_seed=100)
    assert dict(first.settings) == {
        "prompt": "x", "seed": 42, "num_inference_steps": 7, "guidance_scale": 3.5, "width": 96, "height": 64,
        "scheduler": "Euler a", "negative_prompt": "blurry",
    }
    assert dict(second.settings) == {"prompt": "y", "seed": 101, "num_inference_steps": 20, "guidance_scale": 5.0}
    assert first.error is None and second.error is None


def test_unknown_columns_are_one_error_naming_them_and_the_valid_ones(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a", "stepz": 3}\n{"prompt": "b", "cfg": 2}\n')
    with pytest.raises(BatchInputError, match=r"unknown column\(s\) cfg, stepz; valid columns: prompt, negative_prompt, seed, steps"):
        read_rows(path)


def test_bad_values_become_failed_rows_not_a_failed_file() -> None:
    rows = rows_from_records([{"prompt": "ok"}, {"prompt": "x", "steps": "many"}, {"seed": 3}, {"prompt": "y", "seed": 1.5}])
    assert [r.error for r in rows] == [
        None, "column 'steps': invalid literal for int() with base 10: 'many'", "no prompt", "column 'seed': 1.5 is not an integer",
    ]


@pytest.mark.parametrize(("name", "text", "message"), [
    ("p.md", "a", "must end in .txt"),
    ("p.jsonl", "[1, 2]", "line 1: each line must be a JSON object"),
    ("p.jsonl", "{oops", "line 1: not JSON"),
    ("p.txt", "\n\n", "no rows"),
    ("p.csv", "prompt\nx,y\n", "line 2: more cells than columns"),
])
def test_unusable_files_say_why(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(BatchInputError, match=message):
        read_rows(tmp_path / name)
    with pytest.raises(BatchInputError, match="does not exist"):
        read_rows(tmp_path / "missing.txt")
