"""Smoke test of bench/pipelines.py: the quick mode runs and prints both tables with every row.

Speed is never asserted (a shared 2-core machine); the images must agree with diffusers' classic
pipeline, which says every library did the same work.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "pipelines.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_pipelines", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of built pipelines for both tests (each is built once, on first use)."""
    return tmp_path_factory.mktemp("bench-pipelines")


def _rows(text: str, first_cell: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith(f"| {first_cell} |")]


def test_quick_prints_both_tables(workdir: Path, capsys: pytest.CaptureFixture[str]):
    _bench_module().main(["--quick", "--in-process", "--workdir", str(workdir)])
    out = capsys.readouterr().out
    assert "| size | pipeline | ours (ms) |" in out and "| size | pipeline | library | step (ms) |" in out
    first, second = out.split("Per denoise step")
    second, controlnet = second.split("Time one ControlNet adds")
    end_to_end = _rows(first, "tiny")
    assert [r[1] for r in end_to_end] == ["sd", "sdxl", "flux", "sd-controlnet"]
    for row in end_to_end:
        assert all(float(v) > 0 for v in row[2:5])  # ours, ours memo, classic (ms)
        assert row[6].endswith("x")
        assert max(float(d) for d in row[8].split(";")) < 1e-4  # same images as diffusers classic
    assert end_to_end[0][5] == "-" and float(end_to_end[1][5]) > 0 and float(end_to_end[2][5]) > 0  # modular: SDXL, Flux
    assert end_to_end[3][5] == "-"
    steps = _rows(second, "tiny")
    assert all(len(r) == 10 and float(r[9]) > 0 for r in steps)  # the null-UNet overhead column
    steps = [(r[1], r[2], r[5]) for r in steps]
    assert steps == [("sd", "ours", "1"), ("sd", "classic", "1"),
                     ("sdxl", "ours", "1"), ("sdxl", "classic", "1"), ("sdxl", "modular", "2"),
                     ("flux", "ours", "1"), ("flux", "classic", "1"), ("flux", "modular", "1"),
                     ("sd-controlnet", "ours", "1"), ("sd-controlnet", "classic", "1")]  # denoiser calls per step
    assert len(_rows(controlnet, "tiny")) == 1 and _rows(controlnet, "tiny")[0][3].endswith("x")


def test_child_mode_prints_one_json_line(workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """The --child protocol each measurement process speaks: one library, one JSON line on stdout.
    (Called in this process: spawning a fresh interpreter would only add imports to the test.)"""
    bench = _bench_module()
    folder = bench.pipeline_folder(workdir, "tiny", "sd")
    opts = {"library": "ours", "kind": "sd", "folder": str(folder), "device": "cpu", "dtype": "float32",
            "threads": 1, "steps": 2, "guidance": 7.5, "seed": 0, "side": 64, "repeats": 1,
            "out": str(tmp_path / "image.npy")}
    bench.main(["--child", json.dumps(opts)])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["unet_calls"] == 1 and result["scale_calls"] == 1 and result["step_calls"] == 1
    assert 0 < result["non_unet_s"] < result["step_s"] and result["memo_s"] > 0 and result["null_non_unet_s"] > 0
    assert (tmp_path / "image.npy").is_file()
