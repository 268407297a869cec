"""Building, auto-wiring, nesting, editing, select, pictures."""

from __future__ import annotations

import pytest
import torch

from diffblocks.blocks import GraphError
from diffblocks.graph import Graph, Loop, Switch

from . import helpers as h


def test_sequential_wires_by_name_with_renames():
    g = h.inc_chain(3)
    assert g.edges == [("n0.x", "n1.x"), ("n1.x", "n2.x")]
    assert set(g.inputs) == {"x", "step"}  # one graph input per wire, shared
    assert g.graph_inputs["step"].targets == [("n0", "step"), ("n1", "step"), ("n2", "step")]
    assert g.graph_outputs == {"x": "n2.x"}
    assert g(x=0.0, step=2.0) == 6.0

    r = Graph.sequential([("a", h.inc), ("b", h.mul)], rename={"a.x": "y", "b.x": "y"}, name="r")
    # a's output and b's input are both wired as "y"; a's input is also "y" -> graph input y
    assert r.edges == [("a.x", "b.x")] and set(r.inputs) == {"y", "step", "factor"}
    assert r(y=1.0) == 4.0


def test_sequential_by_registered_names_and_explicit_outputs():
    g = Graph.sequential(["core_inc", "core_inc", ("m", "core_mul", None)], outputs={"result": "x"})
    assert list(g.nodes) == ["core_inc", "core_inc_2", "m"]
    assert g.graph_outputs == {"result": "m.x"}


def test_graph_is_a_block_and_nests():
    inner = h.inc_chain(2, name="inner")
    outer = Graph("outer").add("first", inner).add("second", inner).add("m", h.mul)
    outer.connect("first.x", "second.x").connect("second.x", "m.x")
    outer.expose_input("x", "first.x").expose_output("x", "m.x")
    assert outer.inputs["x"].required
    assert outer(x=0.0) == 8.0  # (0+1+1+1+1)*2
    deeper = Graph("deeper").add("o", outer)
    deeper.expose_input("x", "o.x").expose_output("y", "o.x")
    assert deeper(x=1.0) == 10.0


def test_graph_input_defaults():
    g = Graph("g").add("a", h.inc)
    g.expose_input("x", "a.x", default=5.0, description="start")
    g.expose_output("x", "a.x")
    assert g.inputs["x"].default == 5.0 and g.inputs["x"].description == "start"
    assert g() == 6.0
    assert g(x=None) == 6.0  # None means "not given"


def test_replace_keeps_edges_and_checks():
    g = h.txt2img()
    g.replace("decode", h.scale.with_config(factor=3.0))
    assert g.nodes["decode"].config == {"factor": 3.0}
    with pytest.raises(GraphError) as err:
        g.replace("decode", h.inc)  # has no 'latents' ports: breaks edges
    assert "unknown_port" in err.value.kinds
    assert g.nodes["decode"].config == {"factor": 3.0}  # unchanged after a failed edit
    with pytest.raises(GraphError):
        g.replace("nope", h.inc)


def test_remove_reports_what_broke_and_rolls_back():
    g = h.txt2img()
    with pytest.raises(GraphError) as err:
        g.remove("embed")
    assert err.value.problems[0].kind == "unconnected_input"
    assert err.value.problems[0].node == "denoise" and err.value.problems[0].port == "prompt_embeds"
    assert "embed" in g.nodes and g.problems() == []
    g.remove("decode")  # nothing depends on it but the output: fine
    assert "decode" not in g.nodes and "image" not in g.graph_outputs


def test_insert_on_an_edge():
    g = h.txt2img()
    g.insert("boost", h.scale.with_config(factor=10.0), edge=("denoise.latents", "decode.latents"))
    assert ("denoise.latents", "boost.latents") in g.edges and ("boost.latents", "decode.latents") in g.edges
    out = g.run(inputs={"value": 0.0, "start": 1.0, "timesteps": torch.tensor([1.0])}, progress=False, cache=False)
    plain = h.txt2img().run(inputs={"value": 0.0, "start": 1.0, "timesteps": torch.tensor([1.0])}, progress=False, cache=False)
    assert torch.allclose(out.image, plain.image * 10)
    with pytest.raises(GraphError):
        g.insert("bad", h.make_embeds, edge=("boost.latents", "decode.latents"))  # PromptEmbeds into latents
    assert "bad" not in g.nodes


def test_edit_block_groups_changes():
    g = h.inc_chain(2)
    with g.edit():
        g.remove("n1")
        g.add("n1", h.mul)
        g.connect("n0.x", "n1.x")
        g.expose_input("factor", "n1.factor")
        g.expose_output("x", "n1.x")
    assert g(x=1.0, step=1.0, factor=3.0) == 6.0
    with pytest.raises(GraphError):
        with g.edit():
            g.disconnect("n1.x")
    assert ("n0.x", "n1.x") in g.edges


def test_switch_by_presence_and_select():
    text2img = Graph.wrap(h.make_latents, "text2img")
    img2img = Graph("img2img").add("s", h.scale)
    img2img.expose_input("image", "s.latents").expose_output("latents", "s.latents")
    sw = Switch({"img2img": img2img, "text2img": text2img}, when={"img2img": "image"}, default="text2img")
    g = Graph("g").add("start", sw).add("after", h.scale)
    g.connect("start.latents", "after.latents")
    g.expose_input("image", "start.image").expose_input("value", "start.value")
    g.expose_output("latents", "after.latents")
    g.validate()
    assert torch.equal(g(value=3.0), torch.full((1, 4), 3.0))
    img = torch.full((1, 2), 7.0)
    assert torch.equal(g(image=img), img)
    assert g.compile().last_run_report.branches == {"start": "img2img"}

    picked = g.select(image=img)
    assert isinstance(picked.nodes["start"], Graph) and picked.nodes["start"].name == "img2img"
    assert set(picked.inputs) == {"image"}  # 'value' is no longer consumed
    picked.validate()
    assert torch.equal(picked(image=img), img)
    plain = g.select()
    assert plain.nodes["start"].name == "text2img" and "image" not in plain.inputs
    assert isinstance(g.nodes["start"], Switch)  # the original is untouched


def test_switch_by_predicate():
    big = Graph.wrap(h.mul, "big")
    small = Graph.wrap(h.inc, "small")
    sw = Switch({"big": big, "small": small}, predicate="core_bigger")
    g = Graph("g").add("sw", sw)
    g.expose_input("x", "sw.x").expose_output("x", "sw.x")
    assert g(x=1.0) == 2.0 and g(x=1000.0) == 2000.0
    assert g.select(x=1000.0).nodes["sw"].name == "big"


def test_select_recurses_into_loops_and_subgraphs():
    sw = Switch({"on": Graph.wrap(h.mul, "on"), "off": Graph.wrap(h.inc, "off")}, when={"on": "factor"}, default="off")
    body = Graph("body").add("sw", sw)
    body.expose_input("x", "sw.x").expose_input("t", "sw.step").expose_input("factor", "sw.factor")
    body.expose_output("x", "sw.x")
    loop = Loop(body, over="ts", item="t", carry={"x": "x"})
    g = Graph("g").add("loop", loop)
    g.expose_input("ts", "loop.ts").expose_input("x", "loop.x").expose_input("factor", "loop.factor")
    g.expose_output("x", "loop.x")
    picked = g.select(factor=2.0)
    assert picked.nodes["loop"].body.nodes["sw"].name == "on"
    assert g.select().nodes["loop"].body.nodes["sw"].name == "off"


def test_pictures_and_summary():
    g = h.txt2img()
    mermaid = g.to_mermaid()
    assert mermaid.startswith("flowchart LR") and "subgraph n_denoise" in mermaid and "n_embed" in mermaid
    dot = g.to_dot()
    assert dot.startswith('digraph "toy"') and "cluster_n_denoise" in dot and dot.rstrip().endswith("}")
    text = g.summary()
    for piece in ["embed: core_make_embeds v1", "Loop over timesteps", "prompt_embeds: PromptEmbeds", "image: Latents", "config: {\"factor\": 2.0}"]:
        assert piece in text
    enc = Graph("e").add("enc", h.encode)
    enc.expose_input("prompt", "enc.prompt")
    assert "encoder: torch.nn.Linear" in enc.summary()


def test_copy_is_independent():
    g = h.inc_chain(2)
    c = g.copy()
    c.remove("n1")
    assert "n1" in g.nodes


def test_editing_inside_composites_by_path():
    g = h.txt2img()
    body = g.nodes["denoise"].body
    g.replace("denoise.step", "core_denoise_step")  # dotted or slashed paths both work
    with pytest.raises(GraphError) as err:
        g.replace("denoise/step", h.inc)  # breaks the body's wiring
    assert "unknown_port" in err.value.kinds
    assert body.nodes["step"] is h.denoise_step  # rolled back
    with pytest.raises(GraphError) as err:
        g.remove("denoise/step")  # the loop's carried output disappears: the outer graph breaks
    assert "step" in body.nodes
    with pytest.raises(GraphError):
        g.replace("embed/x", h.inc)  # a leaf has no inside
    with pytest.raises(GraphError):
        g.replace("nothere/x", h.inc)


def test_insert_inside_a_switch_branch():
    img2img = Graph("img2img").add("s", h.scale)
    img2img.expose_input("image", "s.latents").expose_output("latents", "s.latents")
    sw = Switch({"img2img": img2img, "text2img": Graph.wrap(h.make_latents, "text2img")}, when={"img2img": "image"}, default="text2img")
    g = Graph("g").add("start", sw)
    g.expose_input("image", "start.image").expose_output("latents", "start.latents")
    with pytest.raises(GraphError):
        g.replace("start/s", h.scale)  # a Switch needs a branch name in the path
    g.replace("start/img2img/s", h.scale.with_config(factor=3.0))
    assert torch.equal(g(image=torch.ones(1)), torch.full((1,), 3.0))


def test_insert_into_a_nested_graph():
    g = Graph("g").add("sub", h.inc_chain(2))
    g.expose_input("x", "sub.x").expose_output("x", "sub.x")
    assert g(x=1.0) == 3.0
    g.insert("sub/m", h.mul, edge=("n0.x", "n1.x"))
    assert g(x=1.0) == 5.0  # (1 + 1) * 2 + 1


def test_diagram_ids_do_not_collide():
    from diffblocks.graph.export import _ident

    paths = ["a_b/c", "a/b_c", "a_b_c", "a/b/c", "#in/a", "in/a", "a/#anchor", "a/anchor"]
    assert len({_ident(p) for p in paths}) == len(paths)


def test_a_graph_cannot_contain_itself():
    g = h.inc_chain(1)
    with pytest.raises(GraphError, match="cannot contain itself"):
        g.add("me", g)
    outer = Graph("outer").add("inner", g)
    with pytest.raises(GraphError, match="cannot contain itself"):
        g.add("loop", Loop(outer, over="xs", item="step", carry={"x": "x"}))
    with pytest.raises(GraphError, match="cannot contain itself"):
        g.add("loop2", Loop(g, over="xs", item="step", carry={"x": "x"}))


def test_graphs_built_below_graph_py_are_full_graphs():
    """Loop/Switch wrapping a plain block, a loaded file and compose.sequential build the public
    Graph (the lower modules never import graph.py; it registers itself in core.py)."""
    from diffblocks.graph.compose import sequential
    from diffblocks.graph.core import GraphCore

    loop = Loop(h.inc, over="ts", item="step", carry={"x": "x"})
    sw = Switch({"on": h.mul, "off": h.inc}, when={"on": "factor"}, default="off")
    assert type(loop.body) is Graph and {type(g) for g in sw.branches.values()} == {Graph}
    assert loop(ts=[1.0, 2.0], x=0.0) == 3.0  # run alone through a wrapping Graph's plan
    loaded = Graph.from_json(h.txt2img().to_json())
    assert type(loaded.nodes["denoise"].body) is Graph and loaded.nodes["denoise"].body.to_json()
    assert type(sequential([h.inc])) is Graph

    class Custom(Graph):
        pass

    assert type(Custom.from_json(loaded.to_json()).nodes["denoise"].body) is Custom
    assert type(Custom.sequential([h.inc]).select()) is Custom
    assert issubclass(Graph, GraphCore) and not hasattr(GraphCore, "compile")
