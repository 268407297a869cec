"""``--replay`` of an img2img PNG from another directory, and what it says when the init image is
missing or changed (issue 14 item 4); ``validate`` on hostile files (issue 21 item 4)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from diffblocks.cli import main
from diffblocks.cli.run import read_png_metadata
from tests.cli.conftest import crafted_png

STEPS = ["--steps", "2", "--quiet"]


def _pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture()
def img2img_png(tiny_sd_dir, tmp_path, monkeypatch, init_png):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(init_png, work / "init.png")
    monkeypatch.chdir(work)  # the user passes a relative path, as in the issue
    assert main(["run", "sd15-img2img", "--model", str(tiny_sd_dir), "--prompt", "a cat", "--image", "init.png",
                 "--strength", "0.6", "--out", "i2i.png", *STEPS]) == 0
    return work / "i2i.png"


def test_png_records_resolved_path_and_hash(img2img_png):
    inputs = read_png_metadata(img2img_png)["inputs"]
    assert inputs["image"] == str(img2img_png.parent / "init.png")
    assert len(inputs["image_sha256"]) == 64


def test_replay_works_from_another_directory(img2img_png, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = elsewhere / "again.png"
    assert main(["run", "--replay", str(img2img_png), "--out", str(out), "--quiet"]) == 0
    assert np.array_equal(_pixels(out), _pixels(img2img_png))


def test_replay_names_a_missing_init_image(img2img_png, capsys):
    (img2img_png.parent / "init.png").unlink()
    assert main(["run", "--replay", str(img2img_png), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "init.png" in err and "does not exist" in err and "--image" in err


def test_replay_refuses_a_changed_init_image_and_accepts_one_given(img2img_png, capsys, tmp_path):
    init = img2img_png.parent / "init.png"
    Image.fromarray(np.full((64, 64, 3), 10, np.uint8)).save(init)
    assert main(["run", "--replay", str(img2img_png), "--quiet"]) == 2
    assert "has changed since the PNG was made" in capsys.readouterr().err
    # Given explicitly, it runs (with a warning that the result will differ).
    assert main(["run", "--replay", str(img2img_png), "--image", str(init), "--out", str(tmp_path / "x.png"), "--quiet"]) == 0
    assert "not the image the PNG was made from" in capsys.readouterr().err


@pytest.mark.parametrize("graph", ["../../x.json", "/etc/passwd", "graph.json"])
def test_replay_never_opens_a_path_from_the_graph_chunk(graph, tmp_path, monkeypatch, capsys):
    decoy = tmp_path / "x.json"
    decoy.write_text("{}")
    monkeypatch.chdir(tmp_path)
    import diffblocks.graph.jsonio as jsonio

    opened = []
    real = jsonio.load_graph
    monkeypatch.setattr(jsonio, "load_graph", lambda source, **kw: opened.append(source) or real(source, **kw))
    png = crafted_png(tmp_path / "evil.png", graph=graph)
    assert main(["run", "--replay", str(png)]) == 2
    assert "not a graph" in capsys.readouterr().err and not opened


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "dir"])
def test_validate_refuses_non_regular_files_at_once(target, fifo, tmp_path, capsys):
    path = {"/dev/zero": "/dev/zero", "fifo": str(fifo), "dir": str(tmp_path)}[target]
    assert main(["validate", path]) == 1
    assert "not a regular file" in capsys.readouterr().err


def test_validate_refuses_a_file_that_is_not_graph_json(tmp_path, capsys):
    text = tmp_path / "passwd.json"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")
    assert main(["validate", str(text)]) == 1
    assert "is not a graph" in capsys.readouterr().err
