"""`diffblocks run --controlnet PATH --control-image IMG [--control-scale S] [--canny]`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from diffblocks.cli import main
from diffblocks.cli.run import read_png_metadata
from tests.presets.controlnet_fixtures import tiny_controlnet


def _pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def controlnet_dir(tiny_sd_dir, tmp_path_factory):
    from diffusers import UNet2DConditionModel

    folder = tmp_path_factory.mktemp("cn") / "controlnet"
    tiny_controlnet(UNet2DConditionModel.from_pretrained(str(tiny_sd_dir / "unet")), seed=3).save_pretrained(str(folder))
    return folder


def test_run_with_controlnet_canny_and_replay(tiny_sd_dir, controlnet_dir, tmp_path):
    photo = tmp_path / "photo.png"
    square = np.zeros((64, 64, 3), np.uint8)
    square[16:48, 16:48] = 255
    Image.fromarray(square).save(photo)
    base = ["run", "--model", str(tiny_sd_dir), "--prompt", "a cat", "--steps", "2", "--quiet"]
    control = ["--controlnet", str(controlnet_dir), "--control-image", str(photo), "--canny"]
    assert main([*base, *control, "--control-scale", "0.8", "--out", str(tmp_path / "cn.png")]) == 0
    assert main([*base, *control, "--control-scale", "0", "--out", str(tmp_path / "off.png")]) == 0
    assert not np.array_equal(_pixels(tmp_path / "cn.png"), _pixels(tmp_path / "off.png"))
    meta = read_png_metadata(tmp_path / "cn.png")
    assert meta["inputs"]["controlnet"] == [str(controlnet_dir)] and meta["inputs"]["canny"] is True
    assert "canny" in json.loads(meta["graph"])["graph"]["nodes"]

    assert main(["run", "--replay", str(tmp_path / "cn.png"), "--quiet"]) == 0
    assert np.array_equal(_pixels(tmp_path / "cn-replay.png"), _pixels(tmp_path / "cn.png"))


def test_run_with_two_controlnets(tiny_sd_dir, controlnet_dir, tmp_path):
    image = tmp_path / "c.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(image)
    argv = ["run", "--model", str(tiny_sd_dir), "--prompt", "a cat", "--steps", "2", "--quiet", "--out", str(tmp_path / "two.png"),
            "--controlnet", str(controlnet_dir), "--control-image", str(image), "--control-scale", "0.5",
            "--controlnet", str(controlnet_dir), "--control-image", str(image), "--control-scale", "0.5"]
    assert main(argv) == 0
    one = argv[:8] + ["--out", str(tmp_path / "one.png"), "--controlnet", str(controlnet_dir), "--control-image", str(image)]
    assert main(one) == 0
    # Two copies of one net at 0.5 each sum to the net at 1.0 (up to rounding to 8-bit pixels).
    assert np.abs(_pixels(tmp_path / "two.png").astype(int) - _pixels(tmp_path / "one.png")).max() <= 1


def test_control_flags_are_checked(tiny_sd_dir, tmp_path, capsys):
    assert main(["run", "--model", str(tiny_sd_dir), "--prompt", "a", "--control-image", "x.png"]) == 2
    assert "need --controlnet" in capsys.readouterr().err
    assert main(["run", "--model", str(tiny_sd_dir), "--prompt", "a", "--controlnet", "cn"]) == 2
    assert "1 --controlnet need 1 --control-image" in capsys.readouterr().err
