"""`diffblocks run`: a PNG with the graph, inputs, seed and version in it, and `--replay`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from diffblocks import __version__
from diffblocks.cli import main
from diffblocks.cli.run import read_png_metadata


def _pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_run_writes_metadata_and_replay_reproduces(tiny_sd_dir, tmp_path, capsys):
    out = tmp_path / "cat.png"
    argv = ["run", "--model", str(tiny_sd_dir), "--prompt", "a cat", "--negative-prompt", "a dog",
            "--steps", "2", "--guidance", "5", "--seed", "3", "--scheduler", "Euler a", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    meta = read_png_metadata(out)
    assert meta["version"] == __version__
    assert meta["inputs"]["seed"] == 3 and meta["inputs"]["scheduler"] == "Euler a" and meta["inputs"]["dtype"] == "float32"
    assert meta["inputs"]["prompt"] == "a cat" and meta["inputs"]["num_inference_steps"] == 2
    assert json.loads(meta["graph"])["graph"]["name"] == "sd15"

    assert main(["run", "--replay", str(out), "--quiet"]) == 0
    replayed = tmp_path / "cat-replay.png"
    assert np.array_equal(_pixels(replayed), _pixels(out))

    assert main(argv[:-3] + ["--seed", "4", "--out", str(tmp_path / "other.png"), "--quiet"]) == 0
    assert not np.array_equal(_pixels(tmp_path / "other.png"), _pixels(out))


def test_run_img2img_preset_with_an_init_image(tiny_sd_dir, tmp_path):
    init = tmp_path / "init.png"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(init)
    out = tmp_path / "i2i.png"
    assert main(["run", "sd15-img2img", "--model", str(tiny_sd_dir), "--prompt", "a cat", "--image", str(init),
                 "--strength", "0.5", "--steps", "2", "--out", str(out), "--quiet"]) == 0
    assert json.loads(read_png_metadata(out)["graph"])["graph"]["name"] == "sd15-img2img"
    assert _pixels(out).shape == (64, 64, 3)


def test_run_needs_a_prompt_and_replay_needs_metadata(tmp_path, capsys):
    assert main(["run", "--model", str(tmp_path)]) == 2
    assert "--prompt is required" in capsys.readouterr().err
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    assert main(["run", "--replay", str(plain)]) == 2
    assert "no diffblocks metadata" in capsys.readouterr().err


def test_main_job_uses_the_shipped_model(tmp_path):
    """The README's first command: no --model, the tiny-shapes model inside the package."""
    from diffblocks.cli.run import DEFAULT_MODEL, default_model_path

    if not (default_model_path() / "model_index.json").is_file():
        pytest.skip("no shipped model in this checkout")
    out = tmp_path / "out.png"
    assert main(["run", "--prompt", "a red circle on the left", "--steps", "4", "--out", str(out), "--quiet"]) == 0
    meta = read_png_metadata(out)
    assert meta["inputs"]["model"] == DEFAULT_MODEL
    assert _pixels(out).shape == (64, 64, 3)
