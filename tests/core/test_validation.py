"""Every validation error kind, collected into one GraphError naming node, port and JSON path."""

from __future__ import annotations

import json

import pytest

from diffblocks.blocks import GraphError, block
from diffblocks.blocks.errors import PROBLEM_KINDS
from diffblocks.graph import Graph, Loop, Switch

from . import helpers as h


def _kinds(err: GraphError) -> list[str]:
    return [p.kind for p in err.problems]


def test_valid_graph_passes():
    h.txt2img().validate()


def test_type_mismatch_names_both_ends_and_the_fix():
    g = Graph("g")
    g.add("prompt", h.make_embeds).add("init", h.make_latents).add("step", h.denoise_step)
    with pytest.raises(GraphError) as err:
        g.connect("init.latents", "step.prompt_embeds")
    msg = str(err.value)
    assert err.value.problems[0].kind == "type_mismatch"
    assert "step.prompt_embeds expects PromptEmbeds but init.latents gives Latents" in msg
    assert "connect prompt.prompt_embeds" in msg
    assert err.value.problems[0].node == "step" and err.value.problems[0].port == "prompt_embeds"


def test_unconnected_required_input_lists_all():
    g = Graph("g").add("step", h.denoise_step)
    with pytest.raises(GraphError) as err:
        g.validate()
    assert _kinds(err.value) == ["unconnected_input"] * 3
    assert {p.port for p in err.value.problems} == {"latents", "t", "prompt_embeds"}


def test_unknown_port_and_node():
    g = Graph("g").add("a", h.inc).add("b", h.inc)
    with pytest.raises(GraphError) as err:
        g.connect("a.nope", "b.x")
    assert err.value.problems[0].kind == "unknown_port" and "outputs: x" in str(err.value)
    with pytest.raises(GraphError) as err:
        g.connect("zz.x", "b.x")
    assert err.value.problems[0].kind == "unknown_port"
    with pytest.raises(GraphError):
        g.connect("a.x", "b")  # malformed reference
    with pytest.raises(GraphError):
        g.expose_output("o", "a")


def test_cycle_refused_by_connect_and_found_in_files():
    g = Graph("g").add("a", h.inc).add("b", h.inc)
    g.connect("a.x", "b.x")
    with pytest.raises(GraphError) as err:
        g.connect("b.x", "a.x")
    assert err.value.problems[0].kind == "cycle"
    doc = _doc(
        nodes={"a": {"block": "core_inc"}, "b": {"block": "core_inc"}, "c": {"block": "core_inc"}},
        edges=[["a.x", "b.x"], ["b.x", "c.x"], ["c.x", "a.x"]],
    )
    with pytest.raises(GraphError) as err:
        Graph.from_dict(doc)
    cyc = [p for p in err.value.problems if p.kind == "cycle"]
    assert len(cyc) == 1 and "a -> b -> c -> a" in cyc[0].message


def test_unknown_block_and_duplicate_names():
    g = Graph("g")
    with pytest.raises(GraphError) as err:
        g.add("a", "core_inc_typo")
    assert err.value.problems[0].kind == "unknown_block" and "core_inc" in str(err.value)
    g.add("a", h.inc)
    with pytest.raises(GraphError) as err:
        g.add("a", h.inc)
    assert err.value.problems[0].kind == "duplicate_name"
    text = '{"format": "diffblocks.graph", "version": 1, "graph": {"name": "g", "nodes": {"a": {"block": "core_inc"}, "a": {"block": "core_inc"}}}}'
    with pytest.raises(GraphError) as err:
        Graph.from_json(text)
    assert err.value.problems[0].kind == "duplicate_name" and err.value.problems[0].json_path == "graph.nodes.a"


def test_missing_and_conflicting_components():
    g = Graph("g").add("enc", h.encode)
    g.expose_input("prompt", "enc.prompt")
    assert g.required_components()["encoder"].expected_name == "torch.nn.Linear"
    g.validate()
    with pytest.raises(GraphError) as err:
        g.validate(components={})
    p = err.value.problems[0]
    assert p.kind == "missing_component" and p.node == "enc" and "encoder" in p.message
    g.validate(components={"encoder": object()})

    @block("t_enc2", register=False, components={"encoder": "transformers.T5EncoderModel"}, output_name="x")
    def enc2(encoder, x: float) -> float:
        return x

    g.add("enc2", enc2)
    g.expose_input("x", "enc2.x")
    with pytest.raises(GraphError) as err:
        g.validate()
    assert _kinds(err.value) == ["component_conflict"]


def test_bad_config_in_python_and_file():
    g = Graph("g")
    with pytest.raises(GraphError) as err:
        g.add("s", "core_scale", config={"factor": "x", "other": 1})
    assert set(_kinds(err.value)) == {"bad_config"}
    doc = _doc(nodes={"s": {"block": "core_scale", "config": {"factr": 2}}}, inputs={"latents": {"to": ["s.latents"]}})
    with pytest.raises(GraphError) as err:
        Graph.from_dict(doc)
    p = err.value.problems[0]
    assert p.kind == "bad_config" and p.json_path == "graph.nodes.s.config" and "factr" in p.message


def test_all_problems_at_once_with_json_paths():
    doc = _doc(
        nodes={
            "a": {"block": "core_make_latents"},
            "b": {"block": "core_denoise_step"},
            "c": {"block": "no_such_block"},
            "d": {"block": "core_scale", "config": {"factor": "big"}},
        },
        edges=[["a.latents", "b.prompt_embeds"], ["a.latents", "c.x"], ["a.zzz", "d.latents"]],
    )
    with pytest.raises(GraphError) as err:
        Graph.from_dict(doc)
    kinds = set(_kinds(err.value))
    assert {"type_mismatch", "unknown_block", "bad_config", "unknown_port", "unconnected_input"} <= kinds
    by_kind = {p.kind: p for p in err.value.problems}
    assert by_kind["type_mismatch"].json_path == "graph.edges[0]"
    assert by_kind["unknown_block"].json_path == "graph.nodes.c"
    assert by_kind["unknown_port"].json_path == "graph.edges[2]"
    text = str(err.value)
    assert "b.prompt_embeds expects PromptEmbeds but a.latents gives Latents" in text


def test_nested_problems_name_the_path():
    loop = h.denoise_loop()
    loop.body.add("extra", h.denoise_step)  # unconnected inputs inside the body
    g = Graph("g").add("denoise", loop)
    nested = [p for p in g.problems() if "/" in (p.node or "")]
    assert len(nested) == 3 and all(p.node == "denoise/extra" for p in nested)


def test_loop_structure_problems():
    body = h.inc_chain(1)
    bad = Loop(body, over="ts", item="nope", carry={"x": "missing"})
    kinds = [p.kind for p in bad.problems()]
    assert kinds.count("unknown_port") == 2
    g = Graph("g").add("l", bad)
    assert {p.node for p in g.problems()} == {"l"}


def test_switch_problems():
    a = Graph.wrap(h.inc)
    b = Graph.wrap(h.make_latents)
    sw = Switch({"a": a, "b": b}, when={"b": "value", "zz": "x"}, default="nope")
    kinds = [p.kind for p in sw.problems()]
    assert "bad_structure" in kinds  # different outputs
    assert kinds.count("unknown_port") == 2  # unknown branch in when + default
    sw2 = Switch({"a": a}, predicate="no_such_predicate")
    assert [p.kind for p in sw2.problems()] == ["unknown_block"]


def test_graph_input_problems():
    g = Graph("g").add("a", h.inc).add("e", h.make_embeds)
    g.expose_input("v", "a.x", "e.value")  # float and float: fine
    g.validate()
    g2 = Graph("g2").add("a", h.inc).add("s", h.denoise_step)
    g2.expose_input("v", "a.x", "s.latents")
    kinds = [p.kind for p in g2.problems()]
    assert "type_mismatch" in kinds


def test_bad_run_inputs_listed_together():
    g = h.txt2img()
    with pytest.raises(GraphError) as err:
        g.run(inputs={"valu": 1.0, "start": "x"}, progress=False)
    kinds = _kinds(err.value)
    assert kinds.count("bad_input") == 3  # unknown 'valu', bad 'start', missing 'timesteps'
    assert "did you mean value" in str(err.value)


def test_every_kind_is_documented():
    assert {"cycle", "unconnected_input", "type_mismatch", "unknown_block", "duplicate_name",
            "missing_component", "unknown_port", "bad_config"} <= set(PROBLEM_KINDS)


def _doc(nodes, edges=(), inputs=None, outputs=None):
    return {
        "format": "diffblocks.graph",
        "version": 1,
        "graph": {"name": "g", "nodes": nodes, "edges": [list(e) for e in edges], "inputs": inputs or {}, "outputs": outputs or {}},
    }


def test_problem_str_is_readable():
    g = Graph("g").add("step", h.denoise_step)
    text = str(pytest.raises(GraphError, g.validate).value)
    assert text.startswith("graph 'g' is invalid: 3 problems")
    assert "[unconnected_input] step.latents" in text
    json.dumps([str(p) for p in g.problems()])
