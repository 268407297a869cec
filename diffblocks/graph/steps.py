"""Compiled programs and their steps: what runs inside a Plan.

A graph body compiles to a ``_Program``: a slot template (a flat list holding graph inputs,
every node output and constant defaults) and an ordered list of steps. Each step knows its
argument slots, so running a node is a dict comprehension and a call. Composite nodes (nested
graph, Loop, Switch) are steps that run a sub-program in their own slot list.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import networkx as nx

from diffblocks.blocks.base import Block
from diffblocks.blocks.context import RunContext
from diffblocks.blocks.errors import GraphError, InputError
from diffblocks.blocks.ports import MISSING
from diffblocks.graph.composites import Loop, Switch
from diffblocks.graph.core import GraphCore
from diffblocks.graph.progress import make_bar

if TYPE_CHECKING:
    from diffblocks.graph.plan import Plan

__all__ = ["STOP", "ABORT", "RunError", "RunInterrupted"]


class _Stop:
    def __repr__(self) -> str:
        return "STOP"


#: Return this from a step callback to end the loop early (the run goes on with the values so far).
STOP: Any = _Stop()


class _Abort:
    def __repr__(self) -> str:
        return "ABORT"


#: Return this from a step callback to end the whole run (``RunInterrupted`` is raised).
ABORT: Any = _Abort()


class RunError(RuntimeError):
    """A problem found while running (a missing component, a block returning the wrong outputs)."""


class RunInterrupted(RuntimeError):
    """``plan.interrupt()`` was called; raised at the next node boundary. ``.node`` says where."""

    def __init__(self, node: str, why: str = "") -> None:
        super().__init__(why or f"run interrupted before node {node!r}")
        self.node = node


class _Program:
    """A compiled graph body: slot template, graph input/output slots, ordered steps."""

    __slots__ = ("template", "input_slots", "output_slots", "steps", "graph")

    def __init__(self, graph: GraphCore) -> None:
        self.graph = graph
        self.template: list[Any] = []
        self.input_slots: dict[str, int] = {}
        self.output_slots: dict[str, int] = {}
        self.steps: list[Any] = []

    def new_slot(self, value: Any = None) -> int:
        self.template.append(value)
        return len(self.template) - 1


class _Compiler:
    def __init__(self) -> None:
        self.n_bound = 0

    def program(self, graph: GraphCore, prefix: str) -> _Program:
        prog = _Program(graph)
        for name, port in graph.inputs.items():
            prog.input_slots[name] = prog.new_slot(None if port.default is MISSING else port.default)
        fed: dict[tuple[str, str], int] = {}
        for name, gi in graph.exposed_inputs.items():
            for target in gi.targets:
                fed[target] = prog.input_slots[name]
        dg = nx.DiGraph()
        dg.add_nodes_from(graph.nodes)
        dg.add_edges_from((s[0], d[0]) for d, s in graph.sources.items())
        order = list(nx.topological_sort(dg))
        out_slot: dict[tuple[str, str], int] = {}
        for node in order:
            for oname in graph.nodes[node].outputs:
                out_slot[(node, oname)] = prog.new_slot()
        for node in order:
            blk = graph.nodes[node]
            path = f"{prefix}{node}"
            ins: list[tuple[str, int]] = []
            for pname, port in blk.inputs.items():
                src = graph.sources.get((node, pname))
                if src is not None:
                    ins.append((pname, out_slot[src]))
                elif (node, pname) in fed:
                    ins.append((pname, fed[(node, pname)]))
                else:
                    ins.append((pname, prog.new_slot(port.default)))
            outs = [(pname, out_slot[(node, pname)]) for pname in blk.outputs]
            prog.steps.append(self.step(blk, path, ins, outs))
        for name, src in graph.exposed_outputs.items():
            prog.output_slots[name] = out_slot[src]
        return prog

    def step(self, blk: Block, path: str, ins: list[tuple[str, int]], outs: list[tuple[str, int]]) -> Any:
        if isinstance(blk, Loop):
            body = self.program(blk.body, f"{path}/")
            return _LoopStep(blk, path, body, dict(ins), dict(outs))
        if isinstance(blk, Switch):
            progs = {b: self.program(g, f"{path}/{b}/") for b, g in blk.branches.items()}
            return _SwitchStep(blk, path, progs, ins, outs)
        if isinstance(blk, GraphCore):
            return _GraphStep(blk, path, self.program(blk, f"{path}/"), ins, outs)
        idx = self.n_bound
        self.n_bound += 1
        return _LeafStep(blk, path, ins, outs, idx)


class _LeafStep:
    __slots__ = ("block", "path", "ins", "outs", "out_slots", "single", "fn", "idx", "comp_names", "ctx_param")

    def __init__(self, blk: Block, path: str, ins: list[tuple[str, int]], outs: list[tuple[str, int]], idx: int) -> None:
        self.block = blk
        self.path = path
        self.ins = tuple(ins)
        self.outs = tuple(outs)
        self.out_slots = tuple(s for _, s in outs)
        self.single = len(outs) == 1
        self.idx = idx
        self.comp_names = tuple(blk.components)
        self.ctx_param = blk.context_param
        needs_binding = bool(self.comp_names) or self.ctx_param is not None
        self.fn = None if needs_binding else blk.implementation()

    def bind(self, rt: _Runtime) -> Callable[..., Any]:
        extra: dict[str, Any] = {name: rt.component(name, self.path) for name in self.comp_names}
        if self.ctx_param is not None:
            extra[self.ctx_param] = RunContext(self.path, rt)
        fn = functools.partial(self.block.implementation(), **extra)
        rt.bound[self.idx] = fn
        return fn

    def run(self, slots: list[Any], rt: _Runtime) -> None:
        fn = self.fn
        if fn is None:
            fn = rt.bound[self.idx] or self.bind(rt)
        res = fn(**{n: slots[i] for n, i in self.ins})
        if self.single:
            slots[self.out_slots[0]] = res
        else:
            self.store_many(res, slots)

    def store_many(self, res: Any, slots: list[Any]) -> None:
        if isinstance(res, Mapping):
            for name, slot in self.outs:
                if name not in res:
                    raise RunError(f"node {self.path}: block {self.block.label} returned no {name!r} (got {sorted(res)})")
                slots[slot] = res[name]
            return
        if not isinstance(res, (tuple, list)) or len(res) != len(self.outs):
            raise RunError(
                f"node {self.path}: block {self.block.label} must return a dict or a {len(self.outs)}-tuple "
                f"({', '.join(n for n, _ in self.outs)}), got {type(res).__name__}"
            )
        for slot, value in zip(self.out_slots, res):
            slots[slot] = value


class _GraphStep:
    __slots__ = ("block", "path", "prog", "in_map", "out_map", "ins", "out_slots")

    def __init__(self, blk: GraphCore, path: str, prog: _Program, ins: list[tuple[str, int]], outs: list[tuple[str, int]]) -> None:
        self.block, self.path, self.prog, self.ins = blk, path, prog, tuple(ins)
        self.in_map = tuple((prog.input_slots[n], s) for n, s in ins)
        self.out_map = tuple((s, prog.output_slots[n]) for n, s in outs)
        self.out_slots = tuple(s for _, s in outs)

    def run(self, slots: list[Any], rt: _Runtime) -> None:
        body = self.prog.template.copy()
        for b, p in self.in_map:
            body[b] = slots[p]
        _run_steps(self.prog.steps, body, rt)
        for p, b in self.out_map:
            slots[p] = body[b]


class _LoopStep:
    __slots__ = ("block", "path", "prog", "over_slot", "item_slot", "invariant", "carry_init", "carry_pairs", "carry_named", "out_map", "ins", "out_slots")

    def __init__(self, blk: Loop, path: str, prog: _Program, ins: dict[str, int], outs: dict[str, int]) -> None:
        self.block, self.path, self.prog = blk, path, prog
        self.ins = tuple(ins.items())
        self.out_slots = tuple(outs.values())
        self.over_slot = ins[blk.over]
        self.item_slot = prog.input_slots[blk.item]
        carried = set(blk.carry)
        self.invariant = tuple((prog.input_slots[n], s) for n, s in ins.items() if n != blk.over and n not in carried)
        self.carry_init = tuple((prog.input_slots[n], ins[n]) for n in blk.carry)
        self.carry_pairs = tuple((prog.input_slots[i], prog.output_slots[o]) for i, o in blk.carry.items())
        self.carry_named = tuple((n, prog.input_slots[n]) for n in blk.carry)
        self.out_map = tuple((outs[n], prog.input_slots[n]) for n in blk.carry if n in outs)

    def run(self, slots: list[Any], rt: _Runtime) -> None:
        seq = slots[self.over_slot]
        try:
            total = len(seq)
        except TypeError:
            seq = list(seq)
            total = len(seq)
        body = self.prog.template.copy()
        for b, p in self.invariant:
            body[b] = slots[p]
        for b, p in self.carry_init:
            body[b] = slots[p]
        callbacks = rt.callbacks_for(self.path)
        bar = make_bar(rt.progress, total, self.path, len(rt.loop_stack)) if self.block.progress else None
        entry = [0, total]
        rt.loop_stack.append(entry)
        steps, item_slot, pairs = self.prog.steps, self.item_slot, self.carry_pairs
        try:
            for k, item in enumerate(seq):
                entry[0] = k
                body[item_slot] = item
                _run_steps(steps, body, rt)
                for b_in, b_out in pairs:
                    body[b_in] = body[b_out]
                if bar is not None:
                    bar.update(1)
                if callbacks and self._callbacks(callbacks, k, item, body):
                    break
        finally:
            rt.loop_stack.pop()
            if bar is not None:
                bar.close()
        for p, b in self.out_map:
            slots[p] = body[b]

    def _callbacks(self, callbacks: list[Callable[..., Any]], k: int, item: Any, body: list[Any]) -> bool:
        stop = False
        for cb in callbacks:
            values = {n: body[s] for n, s in self.carry_named}
            res = cb(k, item, values)
            if res is STOP:
                stop = True
            elif res is ABORT:
                raise RunInterrupted(self.path, f"run stopped by a step callback at step {k} of loop {self.path}")
            elif res is not None:
                if not isinstance(res, Mapping):
                    raise RunError(f"step callback {cb!r} returned {type(res).__name__}; return None, STOP or a dict of carried values")
                for name, value in res.items():
                    slot = dict(self.carry_named).get(name)
                    if slot is None:
                        raise RunError(f"step callback returned {name!r}; loop {self.path} carries {[n for n, _ in self.carry_named]}")
                    body[slot] = value
        return stop


class _SwitchStep:
    __slots__ = ("block", "path", "progs", "ins", "in_maps", "out_maps", "out_slots", "required")

    def __init__(self, blk: Switch, path: str, progs: dict[str, _Program], ins: list[tuple[str, int]], outs: list[tuple[str, int]]) -> None:
        self.block, self.path, self.progs, self.ins = blk, path, progs, tuple(ins)
        self.out_slots = tuple(s for _, s in outs)
        self.in_maps = {b: tuple((p.input_slots[n], s) for n, s in ins if n in p.input_slots) for b, p in progs.items()}
        self.out_maps = {b: tuple((s, p.output_slots[n]) for n, s in outs) for b, p in progs.items()}
        self.required = {b: tuple(n for n, port in g.inputs.items() if port.required) for b, g in blk.branches.items()}

    def choose(self, slots: list[Any]) -> str | None:
        """The branch that will run with these slot values (``None`` if none can)."""
        try:
            return self.block.pick({n: slots[s] for n, s in self.ins if slots[s] is not None})
        except Exception:
            return None

    def run(self, slots: list[Any], rt: _Runtime) -> None:
        present = {n: slots[s] for n, s in self.ins if slots[s] is not None}
        try:
            branch = self.block.pick(present)
        except ValueError as exc:
            raise RunError(f"node {self.path}: {exc}") from None
        missing = [n for n in self.required[branch] if n not in present]
        if missing:
            raise RunError(f"node {self.path}: branch {branch!r} needs input(s) {', '.join(missing)}")
        rt.branches[self.path] = branch
        prog = self.progs[branch]
        body = prog.template.copy()
        for b, p in self.in_maps[branch]:
            value = slots[p]
            if value is not None:  # absent inputs keep the branch's own defaults
                body[b] = value
        _run_steps(prog.steps, body, rt)
        for p, b in self.out_maps[branch]:
            slots[p] = body[b]


def _run_steps(steps: list[Any], slots: list[Any], rt: _Runtime) -> None:
    flag, hook = rt.flag, rt.on_node_end
    for step in steps:
        if flag.stop:
            raise RunInterrupted(step.path)
        try:
            step.run(slots, rt)
        except RunInterrupted:
            raise
        except GraphError as exc:
            if isinstance(exc, InputError):  # a block's own input check: say which node it was
                _note(exc, step.path)
            raise
        except Exception as exc:
            _note(exc, step.path)
            raise
        if hook is not None:
            hook(step.path, {n: slots[s] for n, s in zip(step.block.outputs, step.out_slots)})


_NOTE = "(in diffblocks node "


def _note(exc: BaseException, path: str) -> None:
    """Name the innermost node an exception came from, once (outer nodes see the note already there)."""
    if not any(note.startswith(_NOTE) for note in getattr(exc, "__notes__", ())):
        exc.add_note(f"{_NOTE}{path})")


class _Flag:
    __slots__ = ("stop",)

    def __init__(self) -> None:
        self.stop = False


class _Runtime:
    """Everything one run needs that is not the compiled program."""

    def __init__(self, plan: Plan, provider: Mapping[str, Any] | None, callbacks: Any, on_node_end: Any, progress: Any, generator: Any) -> None:
        self.provider = provider
        self.resolved: dict[str, Any] = {}
        self.shared: dict[str, Any] = {}
        self.loop_stack: list[list[int]] = []
        self.generator = generator
        self.on_node_end = on_node_end
        self.progress = progress
        self.flag = plan._flag
        self.bound: list[Any] = [None] * plan._n_bound
        self.branches: dict[str, str] = {}
        if callbacks is None:
            self._callbacks: Any = []
        elif callable(callbacks):
            self._callbacks = [callbacks]
        else:
            self._callbacks = callbacks

    def callbacks_for(self, path: str) -> list[Callable[..., Any]]:
        if isinstance(self._callbacks, Mapping):
            found = self._callbacks.get(path, [])
            return [found] if callable(found) else list(found)
        return list(self._callbacks)

    def component(self, name: str, path: str) -> Any:
        if name in self.resolved:
            return self.resolved[name]
        if self.provider is None or name not in self.provider:
            raise RunError(f"node {path} needs component {name!r} but the provider has none (pass components=...)")
        value = self.provider[name]
        self.resolved[name] = value
        return value
