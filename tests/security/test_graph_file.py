"""Issue 21, items 3 and 9: graph files are strict about versions, numbers and characters, and
``Graph.save`` never leaves a half-written file."""

from __future__ import annotations

import json

import pytest

import tests.core.helpers  # noqa: F401  (registers the core_* blocks)
from diffblocks.blocks import GraphError
from diffblocks.fileio import FileWriteError
from diffblocks.graph import Graph
from tests.core.helpers import inc_chain


def _doc(**graph_changes: object) -> dict:
    graph = {"name": "g", "nodes": {"a": {"block": "core_inc"}}, "inputs": {"x": {"to": ["a.x"]}}, "outputs": {"x": "a.x"}}
    graph.update(graph_changes)
    return {"format": "diffblocks.graph", "version": 1, "graph": graph}


def test_the_valid_document_loads():
    assert Graph.from_json(json.dumps(_doc())).nodes.keys() == {"a"}


@pytest.mark.parametrize("version", [True, 1.0, "1", None, 2])
def test_version_must_be_exactly_the_integer_one(version):
    doc = _doc()
    doc["version"] = version
    with pytest.raises(GraphError) as info:
        Graph.from_json(json.dumps(doc))
    assert info.value.problems[0].json_path == "version"


@pytest.mark.parametrize("number", ["1e999", "-1e999", "NaN", "Infinity"])
def test_non_finite_numbers_are_refused(number):
    text = json.dumps(_doc(inputs={"x": {"to": ["a.x"], "default": 0.5}})).replace("0.5", number)
    with pytest.raises(GraphError, match="finite|out of range"):
        Graph.from_json(text)


def test_non_finite_numbers_in_a_dict_document_are_refused():
    with pytest.raises(GraphError, match="not finite"):
        Graph.from_dict(_doc(inputs={"x": {"to": ["a.x"], "default": float("inf")}}))


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "evil\x1b[2J\x1b[31m"},
        {"description": "beep\x07"},
        {"nodes": {"a": {"block": "core_inc", "config": {"step\x1b[0m": 1.0}}}},
        {"inputs": {"x": {"to": ["a.x"], "description": "\x9b31m"}}},
        {"description": "half a pair \ud800"},
    ],
)
def test_control_characters_and_lone_surrogates_are_refused(changes):
    with pytest.raises(GraphError) as info:
        Graph.from_json(json.dumps(_doc(**changes)))
    assert "\x1b" not in str(info.value) and "\x07" not in str(info.value)
    assert "control or non-Unicode character" in str(info.value)


def test_tabs_and_newlines_in_descriptions_are_text():
    assert Graph.from_json(json.dumps(_doc(description="line one\n\tline two"))).description.startswith("line one")


def test_an_unsaveable_graph_leaves_the_old_file(tmp_path):
    path = tmp_path / "graph.json"
    inc_chain(2).save(path)
    before = path.read_bytes()
    for text in ("lone surrogate \udc80", "bell \x07"):
        bad = inc_chain(3)
        bad.description = text
        with pytest.raises(GraphError, match="cannot be saved"):
            bad.save(path)
        assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["graph.json"]


def test_a_write_failing_midway_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "graph.json"
    inc_chain(2).save(path)
    before = path.read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("diffblocks.fileio.os.fsync", disk_full)
    with pytest.raises(FileWriteError, match="No space left"):
        inc_chain(3).save(path)
    assert path.read_bytes() == before
    assert Graph.from_json(path).nodes.keys() == {"n0", "n1"}
    assert [p.name for p in tmp_path.iterdir()] == ["graph.json"]  # no temporary left behind


def test_save_replaces_the_file(tmp_path):
    path = tmp_path / "graph.json"
    inc_chain(2).save(path)
    inc_chain(3).save(path)
    assert len(Graph.from_json(path).nodes) == 3
