"""Running: loops (nested), callbacks, interruption, grad mode, progress, run context, laziness."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import torch

from diffblocks.blocks import Latents, RunContext, block
from diffblocks.graph import STOP, Graph, Loop, RunError, RunInterrupted, Switch

from . import helpers as h

TS = torch.tensor([3.0, 2.0, 1.0])


def _manual(start: float, value: float, ts: torch.Tensor, factor: float = 2.0) -> torch.Tensor:
    lat = torch.full((1, 4), start)
    emb = torch.full((1, 3), value)
    for t in ts:
        lat = lat * 0.9 + t * 0.01 + emb.mean() * 0.001
    return lat * factor


def test_loop_matches_a_manual_loop():
    g = h.txt2img()
    out = g.run(inputs={"value": 2.0, "start": 1.0, "timesteps": TS}, progress=False)
    assert torch.allclose(out.image, _manual(1.0, 2.0, TS))
    plan = g.compile()
    assert plan.order == ["embed", "init", "denoise", "decode"]


def test_nested_loop():
    inner_body = h.inc_chain(1, name="inner_body")  # x + step
    inner_body.expose_input("j", "n0.step")  # item -> step
    del inner_body._inputs["step"]
    inner = Loop(inner_body, over="js", item="j", carry={"x": "x"}, name="inner")
    outer_body = Graph("outer_body").add("inner", inner).add("m", h.mul)
    outer_body.connect("inner.x", "m.x")
    outer_body.expose_input("x", "inner.x").expose_input("js", "inner.js").expose_input("i", "m.factor")
    outer_body.expose_output("x", "m.x")
    outer = Loop(outer_body, over="is_", item="i", carry={"x": "x"}, name="outer")
    g = Graph.wrap(outer)
    seen = []

    @block("t_probe", register=False, output_name="x")
    def probe(x: float, ctx: RunContext) -> float:
        seen.append(ctx.steps)
        return x

    outer_body.insert("probe", probe, edge=("inner.x", "m.x"))
    got = g(x=0.0, js=[1.0, 2.0], is_=[2.0, 3.0], components=None)
    expected = 0.0
    for i in [2.0, 3.0]:
        for j in [1.0, 2.0]:
            expected += j
        expected *= i
    assert got == expected == 27.0
    assert seen == [((0, 2),), ((1, 2),)]  # probe sits in the outer body: one enclosing loop


def test_callbacks_observe_replace_and_stop():
    g = h.txt2img()
    calls = []

    def cb(step: int, t: Any, carried: dict) -> Any:
        calls.append((step, float(t), float(carried["latents"].mean())))
        if step == 0:
            return {"latents": torch.zeros(1, 4)}
        if step == 1:
            return STOP
        return None

    out = g.run(inputs={"value": 0.0, "start": 1.0, "timesteps": TS}, progress=False, callbacks=[cb])
    assert [c[0] for c in calls] == [0, 1]
    lat = torch.zeros(1, 4) * 0.9 + 2.0 * 0.01  # step 1 from the replaced zeros
    assert torch.allclose(out.image, lat * 2)
    targeted = []
    g.run(inputs={"value": 0.0, "start": 1.0, "timesteps": TS}, progress=False, callbacks={"denoise": lambda s, t, c: targeted.append(s)})
    assert targeted == [0, 1, 2]
    with pytest.raises(RunError, match="carries"):
        g.run(inputs={"value": 0.0, "start": 1.0, "timesteps": TS}, progress=False, callbacks=[lambda s, t, c: {"nope": 1}])


def test_on_node_end_hook():
    seen = []
    h.txt2img().run(inputs={"value": 0.0, "start": 1.0, "timesteps": TS[:1]}, progress=False, cache=False,
                    on_node_end=lambda node, outs: seen.append((node, sorted(outs))))
    assert seen == [("embed", ["prompt_embeds"]), ("init", ["latents"]), ("denoise/step", ["latents"]),
                    ("denoise", ["latents"]), ("decode", ["latents"])]


def test_interrupt_from_another_thread():
    started = threading.Event()

    @block("t_slow", register=False)
    def slow(latents: Latents, t: Any) -> Latents:
        started.set()
        time.sleep(0.005)
        return latents

    body = Graph.wrap(slow, "body")
    g = Graph.wrap(Loop(body, over="ts", item="t", carry={"latents": "latents"}))
    plan = g.compile()
    errors = []

    def target():
        try:
            plan.run(inputs={"ts": list(range(2000)), "latents": torch.zeros(1)}, progress=False)
        except RunInterrupted as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    started.wait(5)
    plan.interrupt()
    thread.join(5)
    assert not thread.is_alive()
    assert errors and errors[0].node.endswith("node")
    # the plan is reusable after an interruption
    assert torch.equal(plan.call(inputs={"ts": [1], "latents": torch.ones(1)}, progress=False), torch.ones(1))


def test_no_grad_by_default_and_grad_mode():
    w = torch.ones(1, 4, requires_grad=True)

    @block("t_mulw", register=False)
    def mulw(latents: Latents) -> Latents:
        return latents * w

    g = Graph.wrap(mulw)
    plan = g.compile(cache=False)
    out = plan.call(inputs={"latents": torch.ones(1, 4)}, progress=False)
    assert not out.requires_grad
    out = plan.call(inputs={"latents": torch.ones(1, 4)}, progress=False, grad=True)
    assert out.requires_grad
    out.sum().backward()
    assert torch.equal(w.grad, torch.ones(1, 4))


def test_progress_bar_is_configurable():
    g = h.txt2img()
    buf = io.StringIO()
    g.run(inputs={"value": 0.0, "start": 1.0, "timesteps": TS}, progress={"file": buf, "ascii": True}, cache=False)
    assert "denoise" in buf.getvalue() and "3/3" in buf.getvalue()


def test_run_context_state_is_per_run_and_two_runs_equal_two_fresh_runs():
    body = Graph("body").add("m", h.momentum).add("n", h.denoise_step)
    body.connect("m.latents", "n.latents")
    body.expose_input("latents", "m.latents").expose_input("t", "n.t").expose_input("prompt_embeds", "n.prompt_embeds")
    body.expose_output("latents", "n.latents")

    def build() -> Graph:
        g = h.txt2img()
        with g.edit():
            g.remove("denoise")
            g.add("denoise", Loop(body, over="timesteps", item="t", carry={"latents": "latents"}))
            g.connect("embed.prompt_embeds", "denoise.prompt_embeds")
            g.connect("init.latents", "denoise.latents")
            g.connect("denoise.latents", "decode.latents")
            g.expose_input("timesteps", "denoise.timesteps")
        return g

    inputs = {"value": 1.0, "start": 1.0, "timesteps": TS}
    g = build()
    first = g.run(inputs=inputs, progress=False, cache=False).image
    second = g.run(inputs=inputs, progress=False, cache=False).image
    fresh = build().run(inputs=inputs, progress=False, cache=False).image
    assert torch.equal(first, second) and torch.equal(first, fresh)


def test_stateful_component_block_not_memoised_runs_every_time():
    @block("t_set_timesteps", components={"scheduler": "ToyScheduler"}, memoise=False, register=False, output_name="timesteps")
    def set_timesteps(scheduler: h.ToyScheduler, num_inference_steps: int) -> list[int]:
        return list(scheduler.set_timesteps(num_inference_steps))

    @block("t_sched_step", components={"scheduler": "ToyScheduler"}, register=False, output_name="x")
    def sched_step(scheduler: h.ToyScheduler, x: float, t: int, ctx: RunContext) -> float:
        # the step index lives in the run context, not in the component
        ctx.state["i"] = ctx.state.get("i", -1) + 1
        return x + scheduler.timesteps[ctx.state["i"]] * 0.5

    body = Graph.wrap(sched_step, "body")
    g = Graph("g").add("set", set_timesteps).add("loop", Loop(body, over="timesteps", item="t", carry={"x": "x"}))
    g.connect("set.timesteps", "loop.timesteps")
    g.expose_input("n", "set.num_inference_steps").expose_input("x", "loop.x").expose_output("x", "loop.x")
    sched = h.ToyScheduler()
    a = g.run(inputs={"n": 3, "x": 0.0}, components={"scheduler": sched}, progress=False).x
    b = g.run(inputs={"n": 3, "x": 0.0}, components={"scheduler": sched}, progress=False).x
    assert a == b == 3.0
    report = g.compile().last_run_report
    assert report.nodes["set"].status == "ran" and "memoise=False" in report.nodes["set"].reasons[0]
    # set_timesteps re-ran, but gave content-equal timesteps: the loop's inputs are unchanged
    assert report.nodes["loop"].status == "hit"
    assert g.run(inputs={"n": 4, "x": 0.0}, components={"scheduler": sched}, progress=False).x == 5.0


class RecordingProvider(Mapping):
    """A lazy provider: records which components were actually fetched."""

    def __init__(self, items: dict[str, Any]) -> None:
        self.items_ = items
        self.loaded: list[str] = []

    def __getitem__(self, key: str) -> Any:
        self.loaded.append(key)
        return self.items_[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.items_)

    def __len__(self) -> int:
        return len(self.items_)

    def __contains__(self, key: object) -> bool:
        return key in self.items_


def test_only_nodes_that_run_load_components():
    @block("t_use_a", components={"a": "x.A"}, register=False, output_name="x")
    def use_a(a: Any, x: float) -> float:
        return x + a

    @block("t_use_b", components={"b": "x.B"}, register=False, output_name="x")
    def use_b(b: Any, x: float) -> float:
        return x + b

    sw = Switch({"small": Graph.wrap(use_a, "a"), "big": Graph.wrap(use_b, "b")}, predicate="core_bigger")
    g = Graph.wrap(sw)
    assert set(g.required_components()) == {"a", "b"}
    provider = RecordingProvider({"a": 1.0, "b": 2.0})
    g.validate(components=provider)
    assert provider.loaded == []  # validation only asks 'in'
    assert g.run(inputs={"x": 1.0}, components=provider, progress=False, cache=False).x == 2.0
    assert provider.loaded == ["a"]


def test_runtime_errors_are_clear():
    g = Graph("g").add("enc", h.encode)
    g.expose_input("prompt", "enc.prompt").expose_output("e", "enc.prompt_embeds")
    with pytest.raises(RunError, match="needs component 'encoder'"):
        g.run(inputs={"prompt": "x"}, progress=False)

    @block("t_boom", register=False)
    def boom(x: float) -> float:
        raise ValueError("bad value")

    b = Graph("b").add("boom", boom)
    b.expose_input("x", "boom.x")
    with pytest.raises(ValueError) as err:
        b.run(inputs={"x": 1.0}, progress=False)
    assert any("boom" in note for note in err.value.__notes__)

    @block("t_wrong_outs", register=False)
    def wrong(x: float) -> h.Outputs(a=float, b=float):
        return (x,)

    w = Graph.wrap(wrong)
    with pytest.raises(RunError, match="2-tuple"):
        w.run(inputs={"x": 1.0}, progress=False)


def test_switch_branch_missing_required_input_at_run_time():
    need = Graph.wrap(h.scale, "need")  # needs latents
    other = Graph.wrap(h.make_latents, "other")
    g = Graph.wrap(Switch({"need": need, "other": other}, when={"need": "go"}, default="other"))
    assert not g.inputs["latents"].required
    assert g.run(inputs={}, progress=False).latents.shape == (1, 4)
    with pytest.raises(RunError, match="needs input"):
        g.run(inputs={"go": 1}, progress=False)
    strict = Graph.wrap(Switch({"need": need, "other": other}, when={"need": "go", "other": "value"}))
    with pytest.raises(RunError, match="no branch"):
        strict.run(inputs={}, progress=False)


def test_callback_can_abort_the_run():
    from diffblocks.graph import ABORT

    g = h.txt2img()
    with pytest.raises(RunInterrupted, match="step 1 of loop denoise"):
        g.run(inputs={"value": 0.0, "start": 1.0, "timesteps": TS}, progress=False,
              callbacks=[lambda s, t, c: ABORT if s == 1 else None])
    assert "decode" not in g.compile().last_run_report.nodes
