"""Compile a validated graph into a ``Plan`` and run it.

Compiling resolves everything that does not change between runs: the topological order
(networkx), one slot per value (a flat list), each node's argument slots, constant defaults,
and the callable. Running is then, per node, a dict of keyword arguments built from slots and
one call — a few Python operations, which matters inside a 50-step denoise loop.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import torch

from ..blocks.base import Block, Result
from ..blocks.context import RunContext
from ..blocks.errors import GraphError, Problem
from ..blocks.ports import MISSING
from ..blocks.types import validate_value
from .cache import KeyParts, MemoCache, component_fingerprint, fingerprint
from .composites import Loop, Switch
from .graph import Graph
from .progress import make_bar

__all__ = ["Plan", "compile_graph", "STOP", "RunInterrupted", "RunError", "RunReport", "NodeReport"]


class _Stop:
    def __repr__(self) -> str:
        return "STOP"


#: Return this from a step callback to end the loop early (the run goes on with the values so far).
STOP: Any = _Stop()


class RunError(RuntimeError):
    """A problem found while running (a missing component, a block returning the wrong outputs)."""


class RunInterrupted(RuntimeError):
    """``plan.interrupt()`` was called; raised at the next node boundary. ``.node`` says where."""

    def __init__(self, node: str) -> None:
        super().__init__(f"run interrupted before node {node!r}")
        self.node = node


# ---- compiled program ----------------------------------------------------------------------
class _Program:
    """A compiled graph body: slot template, graph input/output slots, ordered steps."""

    __slots__ = ("template", "input_slots", "output_slots", "steps", "graph")

    def __init__(self, graph: Graph) -> None:
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

    def program(self, graph: Graph, prefix: str) -> _Program:
        prog = _Program(graph)
        for name, port in graph.inputs.items():
            prog.input_slots[name] = prog.new_slot(None if port.default is MISSING else port.default)
        fed: dict[tuple[str, str], int] = {}
        for name, gi in graph._inputs.items():
            for target in gi.targets:
                fed[target] = prog.input_slots[name]
        dg = nx.DiGraph()
        dg.add_nodes_from(graph.nodes)
        dg.add_edges_from((s[0], d[0]) for d, s in graph._edges.items())
        out_slot: dict[tuple[str, str], int] = {}
        for node in nx.topological_sort(dg):
            blk = graph.nodes[node]
            for port in blk.outputs:
                out_slot[(node, port)] = prog.new_slot()
        for node in nx.topological_sort(dg):
            blk = graph.nodes[node]
            path = f"{prefix}{node}"
            ins: list[tuple[str, int]] = []
            for pname, port in blk.inputs.items():
                src = graph._edges.get((node, pname))
                if src is not None:
                    ins.append((pname, out_slot[src]))
                elif (node, pname) in fed:
                    ins.append((pname, fed[(node, pname)]))
                else:
                    ins.append((pname, prog.new_slot(port.default)))
            outs = [(pname, out_slot[(node, pname)]) for pname in blk.outputs]
            prog.steps.append(self.step(blk, path, ins, outs))
        for name, src in graph._outputs.items():
            prog.output_slots[name] = out_slot[src]
        return prog

    def step(self, blk: Block, path: str, ins: list[tuple[str, int]], outs: list[tuple[str, int]]) -> Any:
        if isinstance(blk, Loop):
            body = self.program(blk.body, f"{path}/")
            return _LoopStep(blk, path, body, dict(ins), dict(outs))
        if isinstance(blk, Switch):
            progs = {b: self.program(g, f"{path}/{b}/") for b, g in blk.branches.items()}
            return _SwitchStep(blk, path, progs, ins, outs)
        if isinstance(blk, Graph):
            return _GraphStep(blk, path, self.program(blk, f"{path}/"), ins, outs)
        idx = self.n_bound
        self.n_bound += 1
        return _LeafStep(blk, path, ins, outs, idx)


def compile_graph(graph: Graph, cache: MemoCache | bool | None = None) -> Plan:
    """Validate ``graph`` (``GraphError`` on any problem) and compile it into a ``Plan``."""
    graph.validate()
    return Plan(graph, cache)


# ---- steps ---------------------------------------------------------------------------------
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

    def memo_block(self) -> Block:
        return self.block


class _GraphStep:
    __slots__ = ("block", "path", "prog", "in_map", "out_map", "ins", "out_slots")

    def __init__(self, blk: Graph, path: str, prog: _Program, ins: list[tuple[str, int]], outs: list[tuple[str, int]]) -> None:
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
        except (RunInterrupted, GraphError):
            raise
        except Exception as exc:
            _note(exc, step.path)
            raise
        if hook is not None:
            hook(step.path, {n: slots[s] for n, s in zip(step.block.outputs, step.out_slots)})


def _note(exc: BaseException, path: str) -> None:
    if not getattr(exc, "_diffblocks_noted", False):
        exc.add_note(f"(in diffblocks node {path})")
        exc._diffblocks_noted = True  # type: ignore[attr-defined]


# ---- run-time state ------------------------------------------------------------------------
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


# ---- reports -------------------------------------------------------------------------------
@dataclass
class NodeReport:
    """What happened to one top-level node in a run."""

    status: str  # "hit", "miss", "ran" (not cacheable / cache off)
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class RunReport:
    """Per top-level node: cache hit, or miss and why; time spent. ``branches``: Switch choices."""

    nodes: dict[str, NodeReport] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def hits(self) -> list[str]:
        return [n for n, r in self.nodes.items() if r.status == "hit"]

    @property
    def ran(self) -> list[str]:
        return [n for n, r in self.nodes.items() if r.status != "hit"]

    def explain(self) -> str:
        width = max([len(n) for n in self.nodes] + [4])
        lines = [f"{'node':<{width}}  status  time      why"]
        for name, rep in self.nodes.items():
            why = "; ".join(rep.reasons)
            lines.append(f"{name:<{width}}  {rep.status:<6}  {rep.seconds * 1000:7.2f}ms  {why}")
        for path, branch in self.branches.items():
            lines.append(f"switch {path} -> {branch}")
        return "\n".join(lines)

    __str__ = explain


# ---- the plan ------------------------------------------------------------------------------
class Plan:
    """A compiled graph. ``run`` many times; ``interrupt`` from any thread."""

    def __init__(self, graph: Graph, cache: MemoCache | bool | None = None) -> None:
        self.graph = graph
        if cache is True or cache is None:
            cache = MemoCache()
        self.cache: MemoCache | None = cache if isinstance(cache, MemoCache) else None
        compiler = _Compiler()
        self.program = compiler.program(graph, "")
        self._n_bound = compiler.n_bound
        self._flag = _Flag()
        self.inputs = graph.inputs
        self.outputs = graph.outputs
        self.last_run_report: RunReport | None = None
        self.stats: dict[str, list[float]] = {}
        self._memo_info = {step.path: _memo_info(step) for step in self.program.steps}

    @property
    def order(self) -> list[str]:
        """Top-level nodes in execution order."""
        return [s.path for s in self.program.steps]

    def interrupt(self) -> None:
        """Ask the running run to stop at the next node boundary (``RunInterrupted``)."""
        self._flag.stop = True

    def explain(self) -> str:
        """The last run's report as text: for each node, hit or miss and why."""
        return self.last_run_report.explain() if self.last_run_report else "not run yet"

    def check_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Validate user values at the graph boundary (pydantic); ``GraphError`` lists every problem."""
        problems = []
        checked = {}
        for name, value in inputs.items():
            port = self.inputs.get(name)
            if port is None:
                import difflib

                close = difflib.get_close_matches(name, list(self.inputs), n=2)
                hint = f"; did you mean {' or '.join(close)}?" if close else f"; inputs are {', '.join(self.inputs) or 'none'}"
                problems.append(Problem("bad_input", f"unknown input {name!r}{hint}", port=name))
                continue
            if value is None and not port.required:
                checked[name] = value
                continue
            try:
                checked[name] = validate_value(port.type, value)
            except ValueError as exc:
                problems.append(Problem("bad_input", f"input {name} {exc}", port=name))
        for name, port in self.inputs.items():
            if port.required and name not in inputs:
                problems.append(Problem("bad_input", f"required input {name} ({port.type_name}) is missing", port=name))
        if problems:
            raise GraphError(problems, title=f"bad inputs for graph {self.graph.name!r}")
        return checked

    def run(
        self,
        inputs: Mapping[str, Any] | None = None,
        components: Mapping[str, Any] | None = None,
        *,
        progress: bool | Mapping[str, Any] = True,
        callbacks: Any = None,
        on_node_end: Callable[[str, dict[str, Any]], None] | None = None,
        grad: bool = False,
        cache: bool = True,
        generator: Any = None,
    ) -> Result:
        """Run the graph; returns a ``Result`` of every graph output.

        * ``progress``: loop progress bars (tqdm); ``False`` silences, a dict passes tqdm options;
        * ``callbacks``: ``fn(step, item, carried) -> None | dict | STOP`` called after each loop
          step (a list applies to every loop; ``{"loop_path": fn}`` targets one);
        * ``on_node_end``: ``fn(node_path, outputs)`` after every node;
        * ``grad``: run with autograd on (default ``torch.no_grad()``);
        * ``cache``: ``False`` skips memoisation for this run;
        * ``generator``: available to blocks as ``ctx.generator``.
        """
        values = self.check_inputs(inputs or {})
        rt = _Runtime(self, components, callbacks, on_node_end, progress, generator)
        self._flag.stop = False
        report = RunReport()
        prog = self.program
        slots = prog.template.copy()
        for name, value in values.items():
            slots[prog.input_slots[name]] = value
        memo = self.cache if (cache and self.cache is not None and self.cache.enabled) else None
        start = time.perf_counter()
        with torch.enable_grad() if grad else torch.no_grad():
            try:
                for step in prog.steps:
                    self._run_top(step, slots, rt, memo, report, grad, bool(callbacks))
            finally:
                report.branches = dict(rt.branches)
                report.seconds = time.perf_counter() - start
                self.last_run_report = report
        return Result({name: slots[s] for name, s in prog.output_slots.items()})

    def _run_top(self, step: Any, slots: list[Any], rt: _Runtime, memo: MemoCache | None, report: RunReport, grad: bool, has_callbacks: bool) -> None:
        if self._flag.stop:
            raise RunInterrupted(step.path)
        reasons: list[str] = []
        parts = keep = None
        cacheable, why_not = self._memo_info[step.path]
        if memo is None:
            reasons = ["cache off"]
        elif not cacheable:
            reasons = [why_not]
        elif has_callbacks and isinstance(step, _LoopStep):
            reasons = ["callbacks observe this loop"]
        else:
            keep = []
            parts = self._key_parts(step, slots, rt, grad, keep)
            cached, reasons = memo.lookup(step.path, parts)
            if cached is not None:
                for slot, value in zip(step.out_slots, cached):
                    slots[slot] = value
                report.nodes[step.path] = NodeReport("hit")
                return
        t0 = time.perf_counter()
        _run_steps([step], slots, rt)
        dt = time.perf_counter() - t0
        stat = self.stats.setdefault(step.path, [0, 0.0])
        stat[0] += 1
        stat[1] += dt
        status = "miss" if parts is not None else "ran"
        report.nodes[step.path] = NodeReport(status, reasons, dt)
        if memo is not None and parts is not None and keep is not None:
            memo.store(step.path, parts, tuple(slots[s] for s in step.out_slots), keep)

    def _key_parts(self, step: Any, slots: list[Any], rt: _Runtime, grad: bool, keep: list[Any]) -> KeyParts:
        blk = step.block
        comps = tuple(
            (name, component_fingerprint(rt.provider, name, keep) if rt.provider is not None and name in rt.provider else None)
            for name in blk.required_components()
        )
        ins = tuple((name, fingerprint(slots[s], keep)) for name, s in step.ins)
        config = json.dumps(blk.config, sort_keys=True, default=repr)
        return KeyParts(blk.identity, config, comps, ins, grad)

    def call(self, components: Mapping[str, Any] | None = None, inputs: Mapping[str, Any] | None = None, **options: Any) -> Any:
        """Run and return the single output's value, or a ``Result`` when there are several."""
        result = self.run(inputs=inputs, components=components, **options)
        if len(result) == 1:
            return next(iter(result.values()))
        return result


def _memo_info(step: Any) -> tuple[bool, str]:
    from .validate import walk_leaves

    blk = step.block
    for path, leaf in walk_leaves(blk):
        if not leaf.memoise:
            where = f" ({path})" if path else ""
            return False, f"not cacheable: {leaf.label}{where} has side effects (memoise=False)"
    return True, ""
