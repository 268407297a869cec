"""Graph files: exact round-trip (property-based), strictness, hostile input, schema file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffblocks.blocks import GraphError, block
from diffblocks.graph import Graph, Loop, Switch
from diffblocks.graph.jsonio import LIMITS, graph_json_schema

from . import helpers as h

from diffblocks.registry import register_predicate


@register_predicate("core_bigger_ab")
def _bigger_ab(present):
    return "a" if present.get("x", 0) > 100 else "b"

ROOT = Path(__file__).resolve().parents[2]


def test_round_trip_of_the_toy_pipeline_runs_the_same():
    g = h.txt2img()
    text = g.to_json()
    back = Graph.from_json(text)
    assert back.to_json() == text
    inputs = {"value": 1.0, "start": 2.0, "timesteps": torch.tensor([2.0, 1.0])}
    assert torch.equal(back.run(inputs=inputs, progress=False).image, g.run(inputs=inputs, progress=False).image)
    doc = json.loads(text)
    assert doc["format"] == "diffblocks.graph" and doc["version"] == 1
    assert doc["graph"]["nodes"]["decode"] == {"block": "core_scale", "version": 1, "config": {"factor": 2.0}}


def test_round_trip_from_a_file_and_switches(tmp_path):
    sw = Switch({"big": Graph.wrap(h.mul, "big"), "small": Graph.wrap(h.inc, "small")}, predicate="core_bigger")
    g = Graph("g", description="a switch").add("sw", sw)
    g.expose_input("x", "sw.x", default=3.0, description="the value").expose_output("x", "sw.x")
    path = tmp_path / "g.json"
    g.save(path)
    back = Graph.from_json(path)
    assert back.to_json() == g.to_json() and back() == 4.0
    assert Graph.from_json(str(path)).to_json() == g.to_json()


def test_unregistered_blocks_cannot_be_saved():
    @block("t_private", register=False)
    def private(x: float) -> float:
        return x

    g = Graph.wrap(private)
    with pytest.raises(GraphError, match="not registered"):
        g.to_json()


# Control characters are refused in graph files (terminal escapes), so names never hold them.
names = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | floats | names,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=6,
)


@st.composite
def chains(draw, depth: int = 0) -> Graph:
    """A random chain over x (inc / mul / offset with config / nested graph / loop)."""
    kinds = ["inc", "mul", "offset"] + (["graph", "loop", "switch"] if depth < 2 else [])
    steps = []
    for i in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(kinds))
        if kind == "inc":
            steps.append((f"s{i}", h.inc))
        elif kind == "mul":
            steps.append((f"s{i}", "core_mul"))
        elif kind == "offset":
            steps.append((f"s{i}", "core_offset", {"offset": draw(floats)}))
        elif kind == "graph":
            steps.append((f"s{i}", draw(chains(depth + 1))))
        elif kind == "switch":
            branches = {"a": draw(chains(depth + 1)), "b": draw(chains(depth + 1))}
            if draw(st.booleans()):
                steps.append((f"s{i}", Switch(branches, when={"a": "x"}, default="b")))
            else:
                steps.append((f"s{i}", Switch(branches, predicate="core_bigger_ab")))
        else:
            body = Graph.sequential([("first", h.inc), ("rest", draw(chains(depth + 1)))], name=draw(names))
            steps.append((f"s{i}", Loop(body, over=f"items{depth}", item="step", carry={"x": "x"}, progress=draw(st.booleans()))))
    g = Graph.sequential(steps, name=draw(names))
    g.description = draw(names)
    if "step" in g.graph_inputs:
        g.expose_input("step", default=draw(floats), description=draw(names))
    return g


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chains(), json_values)
def test_round_trip_is_exact(graph, value):
    graph.expose_input("x", default=value if isinstance(value, float) else 1.0)
    graph.validate()
    text = graph.to_json()
    back = Graph.from_json(text)
    assert back.to_json() == text
    assert Graph.from_dict(json.loads(text)).to_json() == text
    inputs = {n: [0.5, 0.25] if n.startswith("items") else 1.0 for n, p in graph.inputs.items() if p.required or n.startswith("items")}
    assert back.run(inputs=inputs, progress=False) == graph.run(inputs=inputs, progress=False)  # same behaviour


def _doc(**graph):
    base = {"name": "g", "nodes": {"a": {"block": "core_inc"}}, "inputs": {"x": {"to": ["a.x"]}}, "outputs": {"x": "a.x"}}
    base.update(graph)
    return {"format": "diffblocks.graph", "version": 1, "graph": base}


def _problems(text_or_doc) -> list:
    if not isinstance(text_or_doc, str):
        text_or_doc = json.dumps(text_or_doc)
    with pytest.raises(GraphError) as err:
        Graph.from_json(text_or_doc)
    return err.value.problems


def test_minimal_document_loads():
    assert Graph.from_json(json.dumps(_doc()))(x=1.0) == 2.0


@pytest.mark.parametrize(
    "mutate, path",
    [
        (lambda d: d.update(extra=1), "extra"),
        (lambda d: d["graph"].update(colour="red"), "graph.colour"),
        (lambda d: d["graph"]["nodes"]["a"].update(cfg={}), "graph.nodes.a"),
        (lambda d: d["graph"]["inputs"]["x"].update(to="a.x"), "graph.inputs.x.to"),
        (lambda d: d["graph"].update(nodes=[]), "graph.nodes"),
        (lambda d: d["graph"].update(edges=[["a.x"]]), "graph.edges[0]"),
        (lambda d: d["graph"]["nodes"].update(b={"block": "core_inc", "loop": {}}), "graph.nodes.b"),
        (lambda d: d["graph"]["nodes"].update(b=3), "graph.nodes.b"),
        (lambda d: d["graph"].update(name=5), "graph.name"),
        (lambda d: d["graph"]["outputs"].update(y="a"), "graph.outputs.y"),
        (lambda d: d["graph"]["nodes"].update({"bad name": {"block": "core_inc"}}), "graph.nodes.bad name"),
    ],
)
def test_strict_schema_errors_have_json_paths(mutate, path):
    doc = _doc()
    mutate(doc)
    problems = _problems(doc)
    assert any(p.json_path is not None and p.json_path.startswith(path) for p in problems), problems


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[1, 2, 3]",
        "null",
        '{"format": "diffblocks.graph", "version": 2, "graph": {}}',
        '{"format": "other", "version": 1, "graph": {}}',
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 5000 + "1" + "}" * 5000,
        json.dumps({"format": "diffblocks.graph", "version": 1, "graph": {"name": "x" * 10_000_000, "nodes": {}}}),
        json.dumps(_doc(description="y" * 100_000)),
        '{"format": "diffblocks.graph", "version": 1, "graph": {"name": "\\ud800", "nodes": {}}}',
        '{"format": "diffblocks.graph", "version": 1, "graph": {"name": "g", "nodes": {"a": {"block": "core_scale", "config": {"factor": NaN}}}}}',
    ],
)
def test_hostile_text_gives_graph_error(text):
    assert _problems(text)


def test_huge_nesting_of_graphs_is_refused_before_building():
    inner: dict = {"name": "g", "nodes": {"a": {"block": "core_inc"}}}
    for _ in range(40):
        inner = {"name": "g", "nodes": {"a": {"graph": inner}}}
    problems = _problems({"format": "diffblocks.graph", "version": 1, "graph": inner})
    assert "nested deeper" in problems[0].message


def test_too_many_nodes_is_refused(monkeypatch):
    monkeypatch.setitem(LIMITS, "max_nodes", 5)
    nodes = {f"n{i}": {"block": "core_inc"} for i in range(6)}
    assert "nodes (limit 5)" in _problems(_doc(nodes=nodes, inputs={}, outputs={}))[0].message


def test_import_paths_are_refused():
    problems = _problems(_doc(nodes={"a": {"block": "os.path:join"}}))
    assert any("import paths are not allowed" in p.message and p.json_path == "graph.nodes.a.block" for p in problems)


def test_file_errors(tmp_path):
    assert "cannot read" in _problems(str(tmp_path / "missing.json"))[0].message
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    assert _problems(str(bad))
    big = tmp_path / "big.json"
    big.write_text(" " * (LIMITS["max_file_bytes"] + 1))
    assert "limit" in _problems(str(big))[0].message


def test_future_block_version_is_refused():
    problems = _problems(_doc(nodes={"a": {"block": "core_inc", "version": 9}}))
    assert problems[0].kind == "unknown_block" and "v9" in problems[0].message


def test_schema_file_is_up_to_date():
    on_disk = json.loads((ROOT / "docs" / "graph.schema.json").read_text())
    assert on_disk == json.loads(json.dumps(graph_json_schema())), "run: diffblocks schema -o docs/graph.schema.json"


def test_documents_validate_against_the_exported_schema():
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(json.loads(h.txt2img().to_json()), graph_json_schema())


def test_loop_over_type_is_saved_by_name():
    from diffblocks.blocks import Timesteps

    loop = h.denoise_loop()
    loop.over_type = Timesteps
    g = Graph("g").add("d", loop)
    g.expose_input("latents", "d.latents").expose_input("timesteps", "d.timesteps").expose_input("p", "d.prompt_embeds")
    text = g.to_json()
    assert json.loads(text)["graph"]["nodes"]["d"]["loop"]["over_type"] == "Timesteps"
    back = Graph.from_json(text)
    assert back.nodes["d"].over_type is Timesteps and back.to_json() == text
    doc = json.loads(text)
    doc["graph"]["nodes"]["d"]["loop"]["over_type"] = "Nonsense"
    with pytest.raises(GraphError, match="unknown port type"):
        Graph.from_dict(doc)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


def _replace(doc, path, value):
    if not path:
        return value
    doc = json.loads(json.dumps(doc))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_files_give_graph_error_or_load(data):
    """Replace any part of a valid file with any JSON value: a GraphError or a valid graph, nothing else."""
    doc = json.loads(h.txt2img().to_json())
    path = data.draw(st.sampled_from(list(_paths(doc))))
    mutated = _replace(doc, path, data.draw(json_values))
    try:
        graph = Graph.from_json(json.dumps(mutated))
    except GraphError as err:
        assert err.problems
    else:
        graph.validate()


def test_non_finite_numbers_cannot_be_saved():
    g = Graph("g").add("s", h.scale, config={"factor": float("inf")})
    with pytest.raises(GraphError, match="cannot be written as JSON"):
        g.to_json()
