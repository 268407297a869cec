"""Compile a validated graph into a ``Plan`` and run it.

Compiling resolves everything that does not change between runs: the topological order
(networkx), one slot per value (a flat list), each node's argument slots, constant defaults,
and the callable (see ``steps.py``). Running is then, per node, a dict of keyword arguments
built from slots and one call — a few Python operations, which matters inside a 50-step
denoise loop. The plan adds, for top-level nodes only: memoisation, timing and the report.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from diffblocks.blocks.call import Result, check_inputs
from diffblocks.graph.cache import KeyParts, MemoCache, component_fingerprint, fingerprint
from diffblocks.graph.core import GraphCore
from diffblocks.graph.report import REPORT_COUNTERS, NodeReport, RunReport
from diffblocks.graph.steps import ABORT, STOP, RunError, RunInterrupted, _Compiler, _Flag, _LoopStep, _run_steps, _Runtime, _SwitchStep
from diffblocks.graph.validate import walk_leaves

__all__ = ["Plan", "compile_graph", "STOP", "ABORT", "RunInterrupted", "RunError", "RunReport", "NodeReport"]


def compile_graph(graph: GraphCore, cache: MemoCache | bool | None = None) -> Plan:
    """Validate ``graph`` (``GraphError`` on any problem) and compile it into a ``Plan``."""
    graph.validate()
    return Plan(graph, cache)


class Plan:
    """A compiled graph. ``run`` many times; ``interrupt`` from any thread."""

    def __init__(self, graph: GraphCore, cache: MemoCache | bool | None = None) -> None:
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
        self._memo_info = {step.path: _memo_info(step.block) for step in self.program.steps}
        # A Switch is as cacheable as the branch that will run.
        self._branch_memo_info = {
            step.path: {b: _memo_info(g, f"{b}/") for b, g in step.block.branches.items()}
            for step in self.program.steps
            if isinstance(step, _SwitchStep)
        }

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
        return check_inputs(self.inputs, inputs, f"bad inputs for graph {self.graph.name!r}")

    def run(
        self,
        inputs: Mapping[str, Any] | None = None,
        components: Mapping[str, Any] | None = None,
        *,
        progress: bool | Mapping[str, Any] = True,
        callbacks: Any = None,
        on_node_end: Callable[[str, dict[str, Any]], None] | None = None,
        grad: bool = False,
        cache: bool | MemoCache = True,
        generator: Any = None,
    ) -> Result:
        """Run the graph; returns a ``Result`` of every graph output.

        * ``progress``: loop progress bars (tqdm); ``False`` silences, a dict passes tqdm options;
        * ``callbacks``: ``fn(step, item, carried) -> None | dict | STOP | ABORT`` called after
          each loop step: a dict replaces carried values, ``STOP`` ends that loop early (the run
          goes on), ``ABORT`` ends the run (``RunInterrupted``). A list applies to every loop;
          ``{"loop_path": fn}`` targets one;
        * ``on_node_end``: ``fn(node_path, outputs)`` after every node;
        * ``grad``: run with autograd on (default ``torch.no_grad()``);
        * ``cache``: ``False`` skips memoisation for this run; a ``MemoCache`` uses that one;
        * ``generator``: available to blocks as ``ctx.generator``.

        An optional input given as ``None`` keeps its default.
        """
        values = self.check_inputs(inputs or {})
        rt = _Runtime(self, components, callbacks, on_node_end, progress, generator)
        self._flag.stop = False
        report = RunReport()
        prog = self.program
        slots = prog.template.copy()
        for name, value in values.items():
            slots[prog.input_slots[name]] = value
        memo = cache if isinstance(cache, MemoCache) else (self.cache if cache else None)
        if memo is not None and not memo.enabled:
            memo = None
        start = time.perf_counter()
        with torch.enable_grad() if grad else torch.no_grad():
            try:
                for step in prog.steps:
                    self._run_top(step, slots, rt, memo, report, grad, bool(callbacks))
            finally:
                report.branches = dict(rt.branches)
                report.counters = rt.shared.get(REPORT_COUNTERS, {})
                report.seconds = time.perf_counter() - start
                self.last_run_report = report
        return Result({name: slots[s] for name, s in prog.output_slots.items()})

    def _run_top(self, step: Any, slots: list[Any], rt: _Runtime, memo: MemoCache | None, report: RunReport, grad: bool, has_callbacks: bool) -> None:
        if self._flag.stop:
            raise RunInterrupted(step.path)
        reasons: list[str] = []
        parts: KeyParts | None = None
        keep: list[Any] = []
        cacheable, why_not = self._memo_info[step.path]
        if not cacheable and step.path in self._branch_memo_info:
            branch = step.choose(slots)
            if branch is not None:
                cacheable, why_not = self._branch_memo_info[step.path][branch]
        if memo is None:
            reasons = ["cache off"]
        elif not cacheable:
            reasons = [why_not]
        elif has_callbacks and isinstance(step, _LoopStep):
            reasons = ["callbacks observe this loop"]
        else:
            parts = self._key_parts(step, slots, rt, grad, keep)
            cached, reasons = memo.lookup(step.path, parts)
            if cached is not None:
                for slot, value in zip(step.out_slots, cached):
                    slots[slot] = value
                report.nodes[step.path] = NodeReport("hit")
                if rt.on_node_end is not None:
                    rt.on_node_end(step.path, dict(zip(step.block.outputs, cached)))
                return
        t0 = time.perf_counter()
        _run_steps([step], slots, rt)
        dt = time.perf_counter() - t0
        stat = self.stats.setdefault(step.path, [0, 0.0])
        stat[0] += 1
        stat[1] += dt
        status = "miss" if parts is not None else "ran"
        report.nodes[step.path] = NodeReport(status, reasons, dt)
        if memo is not None and parts is not None:
            # A lazy provider's fingerprint of a component changes when running the node loaded
            # it; store under the fingerprints as they are now, which the next run will see.
            parts = dataclasses.replace(parts, components=self._component_parts(step, rt, keep))
            memo.store(step.path, parts, tuple(slots[s] for s in step.out_slots), keep)

    def _component_parts(self, step: Any, rt: _Runtime, keep: list[Any]) -> tuple[tuple[str, Any], ...]:
        provider = rt.provider
        return tuple(
            (name, component_fingerprint(provider, name, keep) if provider is not None and name in provider else None)
            for name in step.block.required_components()
        )

    def _key_parts(self, step: Any, slots: list[Any], rt: _Runtime, grad: bool, keep: list[Any]) -> KeyParts:
        blk = step.block
        comps = self._component_parts(step, rt, keep)
        ins = tuple((name, fingerprint(slots[s], keep)) for name, s in step.ins)
        config = json.dumps(blk.config, sort_keys=True, default=repr)
        return KeyParts(blk.identity, config, comps, ins, grad)

    def call(self, components: Mapping[str, Any] | None = None, inputs: Mapping[str, Any] | None = None, **options: Any) -> Any:
        """Run and return the single output's value, or a ``Result`` when there are several."""
        result = self.run(inputs=inputs, components=components, **options)
        if len(result) == 1:
            return next(iter(result.values()))
        return result


def _memo_info(blk: Any, prefix: str = "") -> tuple[bool, str]:
    """Whether a top-level node can be memoised: no leaf inside it declares side effects."""
    for path, leaf in walk_leaves(blk):
        if not leaf.memoise:
            where = f" ({prefix}{path})" if path or prefix else ""
            return False, f"not cacheable: {leaf.label}{where} has side effects (memoise=False)"
    return True, ""
