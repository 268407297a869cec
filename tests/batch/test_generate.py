"""Batch runs on the shipped tiny model: outputs, batching, failed rows, resume after SIGKILL,
and two processes under ``accelerate launch`` (gloo on this CPU machine)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffblocks.batch import rows_from_records
from diffblocks.cli.run import default_model_path, read_png_metadata
from diffblocks.pipeline import Pipeline

PROMPTS = [f"a {c} {s} on the {p}" for c, s, p in zip(
    ["red", "blue", "green", "yellow"] * 3, ["circle", "square", "triangle"] * 4, ["left", "right", "top", "bottom"] * 3)]
STEPS = 2
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pipe() -> Pipeline:
    return Pipeline.from_pretrained(default_model_path(), torch_dtype=torch.float32)


@pytest.fixture(scope="module")
def reference(pipe: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 12 rows made in one process, one image per call."""
    out = tmp_path_factory.mktemp("reference")
    pipe.generate_many([{"prompt": p, "steps": STEPS} for p in PROMPTS], out, progress=False,
                       run_settings={"model": "diffblocks:tiny-shapes", "dtype": "float32"})
    return out


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def _assert_same_images(out: Path, reference: Path, levels: int = 0) -> None:
    for i in range(len(PROMPTS)):
        diff = np.abs(_pixels(out / f"{i:06d}.png") - _pixels(reference / f"{i:06d}.png")).max()
        assert diff <= levels, (i, diff)


def test_twelve_rows_make_images_a_manifest_and_a_grid(reference: Path) -> None:
    manifest = _manifest(reference)
    assert [r["row"] for r in manifest] == list(range(12))
    assert all(r["status"] == "ok" and r["seed"] == r["row"] for r in manifest)
    assert sorted(p.name for p in reference.iterdir()) == sorted([f"{i:06d}.png" for i in range(12)] + ["grid.png", "manifest.jsonl"])
    assert Image.open(reference / "grid.png").size == (4 * 128, 3 * 128)
    # Each PNG replays on its own: the run's settings plus the row's are in it.
    meta = read_png_metadata(reference / "000005.png")
    assert meta["inputs"]["prompt"] == PROMPTS[5] and meta["inputs"]["seed"] == 5
    assert meta["inputs"]["num_inference_steps"] == STEPS and meta["inputs"]["model"] == "diffblocks:tiny-shapes"
    # Different seeds and prompts give different images.
    assert np.abs(_pixels(reference / "000000.png") - _pixels(reference / "000001.png")).max() > 50


def test_batches_of_four_match_one_by_one_and_rerun_skips_everything(pipe: Pipeline, reference: Path, tmp_path: Path) -> None:
    calls = []
    original = Pipeline.__call__

    def counting(self: Pipeline, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(kwargs["prompt"]))
        return original(self, **kwargs)

    rows = [{"prompt": p, "steps": STEPS} for p in PROMPTS]
    Pipeline.__call__ = counting  # type: ignore[method-assign]
    try:
        pipe.generate_many(rows, tmp_path, batch_size=4, progress=False)
        assert calls == [4, 4, 4]
        report = pipe.generate_many(rows, tmp_path, batch_size=4, progress=False)
        assert calls == [4, 4, 4] and report.skipped == list(range(12)) and not report.made
    finally:
        Pipeline.__call__ = original  # type: ignore[method-assign]
    # Each row keeps its own generator: batching changes float rounding, not the image.
    _assert_same_images(tmp_path, reference, levels=2)


def test_failed_rows_are_recorded_and_the_rest_is_made(pipe: Pipeline, tmp_path: Path) -> None:
    rows = rows_from_records([
        {"prompt": PROMPTS[0], "steps": STEPS},
        {"prompt": PROMPTS[1], "steps": STEPS, "size": "65x65"},  # not a multiple of the VAE factor
        {"prompt": PROMPTS[2], "steps": STEPS, "image": str(tmp_path / "missing.png")},
        {"prompt": PROMPTS[3], "steps": "many"},
        {"prompt": PROMPTS[4], "steps": STEPS},
    ])
    report = pipe.generate_many(rows, tmp_path, batch_size=2, progress=False)
    assert report.made == [0, 4]
    assert sorted(report.failed) == [1, 2, 3]
    assert "65" in report.failed[1] and "missing.png" in report.failed[2] and "many" in report.failed[3]
    statuses = {r["row"]: r["status"] for r in _manifest(tmp_path)}
    assert statuses == {0: "ok", 1: "error", 2: "error", 3: "error", 4: "ok"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "diffblocks.cli", "batch", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
def test_resume_after_sigkill_finishes_the_same_set(reference: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "out"
    proc = subprocess.Popen(_cli(str(prompts), "--out", str(out), "--steps", str(STEPS), "--quiet"), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("0*.png"))) < 3 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    made_before = len(list(out.glob("0*.png")))
    assert 0 < made_before < 12, "the kill should land mid-run"
    assert not list(out.glob(".*.tmp")) or True  # a torn temporary may remain; it is never read
    done = subprocess.run(_cli(str(prompts), "--out", str(out), "--steps", str(STEPS), "--quiet"), env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [r["row"] for r in _manifest(out) if r["status"] == "ok"] == list(range(12))
    _assert_same_images(out, reference)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_processes_under_accelerate_make_the_same_images(reference: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "out"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_ip", "127.0.0.1", "--main_process_port", str(_free_port()),
              "-m", "diffblocks.cli", "batch", str(prompts), "--out", str(out), "--steps", str(STEPS), "--quiet"]
    done = subprocess.run(launch, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = _manifest(out)
    assert [r["row"] for r in manifest] == list(range(12))
    assert {r["process"] for r in manifest} == {0, 1}
    assert all(r["process"] == r["row"] % 2 for r in manifest)
    assert not list(out.glob("manifest.part-*"))
    _assert_same_images(out, reference)


def test_a_batch_png_replays_to_the_same_pixels(reference: Path, tmp_path: Path) -> None:
    from diffblocks.cli import main

    out = tmp_path / "replayed.png"
    assert main(["run", "--replay", str(reference / "000005.png"), "--out", str(out), "--quiet"]) == 0
    assert np.abs(_pixels(out) - _pixels(reference / "000005.png")).max() == 0
