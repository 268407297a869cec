"""Every user mistake on the command line: exit 2, one ``error:`` line naming the problem (plus at
most a ``hint:`` line), never a traceback (issue 14 item 3, issue 21 items 4 and 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diffblocks.cli import main
from tests.cli.conftest import crafted_png

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def ctx(tiny_sd_dir, tmp_path, init_png, fifo):
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.json").write_text('{"format": "diffblocks.graph", "version": 1, "graph": {"name": "g", "nodes": {"a": {"block": "no_such_block"}}}}')
    untrusted = tmp_path / "untrusted"
    untrusted.mkdir()
    index = json.loads((tiny_sd_dir / "model_index.json").read_text())
    (untrusted / "model_index.json").write_text(json.dumps({**index, "unet": ["evil_lib", "EvilUNet"]}))
    return {
        "model": str(tiny_sd_dir), "tmp": tmp_path, "init": str(init_png), "fifo": str(fifo),
        "untrusted": str(untrusted),
    }


def _png(ctx, name, **kw) -> str:
    return str(crafted_png(ctx["tmp"] / name, **kw))


T = "--prompt", "a cat", "--steps", "2", "--quiet"

# (id, argv(ctx), words the error line must contain)
CASES = [
    ("steps-zero", lambda c: ["run", "--steps", "0", "--prompt", "x"], ["--steps", "at least 1"]),
    ("steps-not-a-number", lambda c: ["run", "--steps", "many", "--prompt", "x"], ["--steps", "invalid"]),
    ("strength-out-of-range", lambda c: ["run", "--strength", "2", "--prompt", "x"], ["--strength", "[0, 1]"]),
    ("unknown-dtype", lambda c: ["run", "--dtype", "float8", "--prompt", "x"], ["--dtype", "float8"]),
    ("unknown-flag", lambda c: ["run", "--promt", "x"], ["--promt"]),
    ("no-prompt", lambda c: ["run", "--model", c["model"]], ["--prompt is required"]),
    ("height-not-multiple-of-vae-factor", lambda c: ["run", "--model", c["model"], "--height", "65", *T], ["height", "multiple of"]),
    ("model-folder-missing", lambda c: ["run", "--model", str(c["tmp"] / "no" / "such-folder"), *T], ["does not exist", "such-folder"]),
    ("model-folder-empty", lambda c: ["run", "--model", str(c["tmp"] / "empty"), *T], ["model_index.json"]),
    ("model-is-a-file", lambda c: ["run", "--model", c["init"], *T], ["a .png file; expected"]),
    ("unknown-shipped-model", lambda c: ["run", "--model", "diffblocks:no-such", *T], ["no shipped model"]),
    ("hub-repo-offline", lambda c: ["run", "--model", "nobody/no-such-model", *T], ["nobody/no-such-model"]),
    ("untrusted-component-class", lambda c: ["run", "--model", c["untrusted"], *T], ["evil"]),
    ("unknown-preset", lambda c: ["run", "sd15-imgtoimg", "--model", c["model"], *T], ["sd15-imgtoimg"]),
    ("invalid-graph-file", lambda c: ["run", str(c["tmp"] / "bad.json"), "--model", c["model"], *T], ["no_such_block"]),
    ("img2img-without-image", lambda c: ["run", "sd15-img2img", "--model", c["model"], *T], ["image", "sd15-img2img", "missing"]),
    ("inpaint-without-mask", lambda c: ["run", "sd15-inpaint", "--model", c["model"], "--image", c["init"], *T], ["mask_image", "sd15-inpaint"]),
    ("image-missing", lambda c: ["run", "--model", c["model"], "--image", str(c["tmp"] / "nope.png"), *T], ["nope.png", "does not exist"]),
    ("image-not-an-image", lambda c: ["run", "--model", c["model"], "--image", str(c["tmp"] / "notes.txt"), *T], ["notes.txt"]),
    ("image-is-a-fifo", lambda c: ["run", "--model", c["model"], "--image", c["fifo"], *T], ["not a regular file"]),
    ("unknown-sampler", lambda c: ["run", "--model", c["model"], "--scheduler", "Eulerr", *T], ["Eulerr", "valid names"]),
    ("flow-sampler-on-vp-model", lambda c: ["run", "--model", c["model"], "--scheduler", "Flow Euler", *T], ["flow-matching", "VP"]),
    ("mask-without-image", lambda c: ["run", "--model", c["model"], "--mask", c["init"], *T], ["mask_image", "without image"]),
    ("replay-plain-png", lambda c: ["run", "--replay", c["init"]], ["no diffblocks metadata"]),
    ("replay-graph-chunk-is-a-relative-path", lambda c: ["run", "--replay", _png(c, "rel.png", graph="../../x.json")], ["not a graph"]),
    ("replay-graph-chunk-is-etc-passwd", lambda c: ["run", "--replay", _png(c, "abs.png", graph="/etc/passwd")], ["not a graph"]),
    ("replay-dev-zero", lambda c: ["run", "--replay", "/dev/zero"], ["/dev/zero", "not a regular file"]),
    ("replay-fifo", lambda c: ["run", "--replay", c["fifo"]], ["not a regular file"]),
    ("replay-inputs-not-json", lambda c: ["run", "--replay", _png(c, "nj.png", inputs="{oops")], ["not JSON"]),
    ("replay-inputs-not-an-object", lambda c: ["run", "--replay", _png(c, "arr.png", inputs="[1, 2]")], ["JSON object"]),
    ("replay-inputs-bad-dtype", lambda c: ["run", "--replay", _png(c, "dt.png", inputs={"model": "diffblocks:tiny-shapes", "dtype": "float8"})], ["dtype", "float8"]),
    ("replay-inputs-wrong-type", lambda c: ["run", "--replay", _png(c, "ty.png", inputs={"model": "diffblocks:tiny-shapes", "num_inference_steps": "ten"})], ["num_inference_steps"]),
    ("replay-graph-not-valid-json", lambda c: ["run", "--replay", _png(c, "gj.png", graph="{not json")], ["JSON"]),
    ("show-fifo", lambda c: ["show", c["fifo"]], ["not a regular file"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_user_mistake_is_one_line_and_exit_2(case, ctx, capsys):
    _, argv, words = case
    try:
        status = main(argv(ctx))
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("warning:", "note:"))]
    assert status == 2, err
    assert "Traceback" not in err
    assert lines and lines[0].startswith("error: "), err
    assert len(lines) <= 2 and all(line.startswith("hint: ") for line in lines[1:]), err
    for word in words:
        assert word.lower() in lines[0].lower(), (word, lines[0])


def test_at_least_twenty_wrong_invocations():
    assert len(CASES) >= 20


@pytest.mark.parametrize("argv", [["run", "--model", "/no/such/folder", "--prompt", "x"], ["run", "--steps", "0", "--prompt", "x"]])
def test_console_shows_no_traceback(argv, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "diffblocks", *argv], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.startswith("error: ")
