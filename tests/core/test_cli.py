"""The diffblocks command: validate, show, presets, schema (run in-process)."""

from __future__ import annotations

import json

import pytest

from diffblocks.cli import build_parser, main
from diffblocks.presets import list_presets, load_preset
from diffblocks.presets.files import PRESET_PATH_ENV

from . import helpers as h


@pytest.fixture()
def preset_dir(tmp_path, monkeypatch):
    folder = tmp_path / "presets"
    folder.mkdir()
    g = h.txt2img()
    g.description = "A toy text-to-image graph.\nSecond line."
    g.save(folder / "toy-txt2img.json")
    monkeypatch.setenv(PRESET_PATH_ENV, str(folder))
    return folder


def test_validate_ok_and_failing(tmp_path, capsys):
    good = tmp_path / "good.json"
    h.txt2img().save(good)
    assert main(["validate", str(good)]) == 0
    assert "ok (4 nodes" in capsys.readouterr().out

    doc = json.loads(h.txt2img().to_json())
    doc["graph"]["edges"].append(["init.latents", "denoise.prompt_embeds"])
    doc["graph"]["nodes"]["decode"]["config"] = {"factr": 1}
    doc["graph"]["nodes"]["embed"]["block"] = "core_nothing"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    assert main(["validate", str(good), str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.json" in err and "[bad_structure]" in err and "[bad_config]" in err and "[unknown_block]" in err
    assert "graph.nodes.decode.config" in err


def test_validate_hostile_file(tmp_path, capsys):
    bad = tmp_path / "deep.json"
    bad.write_text("[" * 50_000 + "]" * 50_000)
    assert main(["validate", str(bad)]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_show_formats(tmp_path, capsys):
    path = tmp_path / "g.json"
    h.txt2img().save(path)
    assert main(["show", str(path)]) == 0
    assert "Loop over timesteps" in capsys.readouterr().out
    assert main(["show", str(path), "--format", "mermaid"]) == 0
    assert capsys.readouterr().out.startswith("flowchart LR")
    assert main(["show", str(path), "-f", "dot"]) == 0
    assert capsys.readouterr().out.startswith("digraph")
    assert main(["show", str(path), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(h.txt2img().to_json())


def test_presets_empty(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(PRESET_PATH_ENV, str(tmp_path / "none"))
    packaged = list_presets()
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    if not packaged:
        assert "no presets found" in out


def test_presets_listed_and_shown(preset_dir, capsys):
    assert "toy-txt2img" in list_presets()
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "toy-txt2img" in out and "A toy text-to-image graph." in out and "Second line" not in out
    assert main(["show", "toy-txt2img"]) == 0
    assert "embed: core_make_embeds" in capsys.readouterr().out
    assert load_preset("toy-txt2img").to_json() == (preset_dir / "toy-txt2img.json").read_text().rstrip("\n")
    assert main(["show", "toy-txt2im"]) == 2  # a user mistake: one error line, exit 2
    assert "did you mean toy-txt2img" in capsys.readouterr().err


def test_schema_command(tmp_path, capsys):
    out = tmp_path / "schema.json"
    assert main(["schema", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["title"] == "diffblocks graph file"
    capsys.readouterr()
    assert main(["schema"]) == 0
    assert "GraphSpec" in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "validate" in capsys.readouterr().out


def test_subcommands_plug_in_by_module():
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"validate", "show", "presets", "schema"} <= set(choices)
