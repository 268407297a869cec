"""Static validation of a graph: every problem at once, each naming node, port and the fix."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import networkx as nx

from ..blocks.base import Block
from ..blocks.errors import Problem
from ..blocks.types import is_compatible, type_name, validate_value
from ..blocks.ports import MISSING
from .composite import Composite
from .parts import UnknownBlock

if TYPE_CHECKING:
    from .core import GraphCore

__all__ = ["graph_problems", "edge_problems", "component_problems", "walk_leaves", "cycle_problems"]


def _unknown(blk: Block | None) -> bool:
    return isinstance(blk, UnknownBlock)


class _Hints:
    """Suggestions for one validation pass, in time linear in the graph.

    "Did you mean" compares a missing node name with every node name (difflib is quadratic in
    the name length), so a file with thousands of dangling edges would take minutes: the
    comparisons are memoised per name and their cost is capped per pass (``SIMILAR_BUDGET``);
    past the cap a problem simply has no hint. Sources for an input are looked up in tables indexed by port
    name and type, built once.
    """

    #: Character comparisons allowed per validation pass: a handful of typos in a graph of a
    #: thousand nodes get their hint; a file of thousands of dangling edges stops asking.
    SIMILAR_BUDGET = 2_000_000

    def __init__(self, graph: GraphCore) -> None:
        self.graph = graph
        self._budget = self.SIMILAR_BUDGET
        self._similar: dict[str, list[str]] = {}
        self._by_name: dict[str, list[tuple[str, Any]]] | None = None
        self._by_type: dict[Any, list[tuple[str, str]]] | None = None
        self._first: dict[Any, list[tuple[str, str]]] = {}

    def similar(self, node: str) -> list[str]:
        """Up to two node names close to ``node`` (difflib's ratio >= 0.6, best first)."""
        if node not in self._similar:
            matcher = difflib.SequenceMatcher()
            matcher.set_seq2(node)
            scored: list[tuple[float, str]] = []
            for name in self.graph.nodes:
                # quick_ratio is linear, ratio quadratic in the name lengths: charge both.
                self._budget -= len(name) + len(node)
                if self._budget < 0:
                    break
                matcher.set_seq1(name)
                if matcher.real_quick_ratio() < 0.6 or matcher.quick_ratio() < 0.6:
                    continue
                self._budget -= len(name) * len(node)
                if self._budget < 0:
                    break
                score = matcher.ratio()
                if score >= 0.6:
                    scored.append((score, name))
            self._similar[node] = [name for _, name in sorted(scored, key=lambda x: -x[0])[:2]]
        return self._similar[node]

    def _tables(self) -> None:
        self._by_name, self._by_type = {}, {}
        for name, blk in self.graph.nodes.items():
            if _unknown(blk):
                continue
            for port in blk.outputs.values():
                self._by_name.setdefault(port.name, []).append((name, port.type))
                if port.type is not Any:
                    with contextlib.suppress(TypeError):  # an unhashable annotation gets no hint
                        self._by_type.setdefault(port.type, []).append((name, port.name))

    def source(self, dst: tuple[str, str], tp: Any) -> str | None:
        """An output elsewhere in the graph that fits ``tp``: same port name first, then exact type."""
        if self._by_name is None:
            self._tables()
        by_name, by_type = self._by_name or {}, self._by_type or {}
        try:
            named = self._firsts(("named", dst[1], tp), (
                (n, dst[1]) for n, t in by_name.get(dst[1], ()) if (t == tp and tp is not Any) or is_compatible(t, tp)
            ))
            exact = [] if tp is Any else self._firsts(("exact", dst[1], tp), (
                (n, p) for n, p in by_type.get(tp, ()) if p != dst[1]
            ))
        except TypeError:  # an unhashable annotation gets no hint
            return None
        return next((f"{n}.{p}" for n, p in [*named, *exact] if n != dst[0]), None)

    def _firsts(self, key: Any, found: Iterator[tuple[str, str]]) -> list[tuple[str, str]]:
        """The first outputs of two distinct nodes (one may be the asking node itself), memoised."""
        if key not in self._first:
            first: list[tuple[str, str]] = []
            for n, p in found:
                if all(n != m for m, _ in first):
                    first.append((n, p))
                    if len(first) == 2:
                        break
            self._first[key] = first
        return self._first[key]


def _no_node(graph: GraphCore, node: str, role: str, hints: _Hints | None = None) -> Problem:
    close = (hints or _Hints(graph)).similar(node)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return Problem("unknown_port", f"{role} node {node!r} does not exist{hint}", node)


def _no_port(graph: GraphCore, node: str, port: str, side: str) -> Problem:
    blk = graph.nodes[node]
    names = ", ".join(getattr(blk, side)) or "none"
    kind = "input" if side == "inputs" else "output"
    return Problem("unknown_port", f"block {blk.label} has no {kind} {port!r} ({side}: {names})", node, port)


def edge_problems(
    graph: GraphCore, src: tuple[str, str], dst: tuple[str, str], hints: _Hints | None = None
) -> list[Problem]:
    """Problems with the single edge src -> dst (ports exist, types compatible)."""
    hints = hints or _Hints(graph)
    problems = []
    src_blk, dst_blk = graph.nodes.get(src[0]), graph.nodes.get(dst[0])
    if src_blk is None:
        problems.append(_no_node(graph, src[0], "source", hints))
    if dst_blk is None:
        problems.append(_no_node(graph, dst[0], "target", hints))
    if problems or _unknown(src_blk) or _unknown(dst_blk):
        return problems
    assert src_blk is not None and dst_blk is not None
    out = src_blk.outputs.get(src[1])
    inp = dst_blk.inputs.get(dst[1])
    if out is None:
        problems.append(_no_port(graph, src[0], src[1], "outputs"))
    if inp is None:
        problems.append(_no_port(graph, dst[0], dst[1], "inputs"))
    if out is not None and inp is not None and not is_compatible(out.type, inp.type):
        msg = (
            f"{dst[0]}.{dst[1]} expects {type_name(inp.type)} but {src[0]}.{src[1]} gives "
            f"{type_name(out.type)}"
        )
        better = hints.source(dst, inp.type)
        msg += f"; connect {better}" if better else f"; feed it a {type_name(inp.type)}"
        problems.append(Problem("type_mismatch", msg, dst[0], dst[1]))
    return problems


def graph_problems(graph: GraphCore) -> list[Problem]:
    """Every structural problem of ``graph`` (nested composites included)."""
    problems: list[Problem] = []
    jp = graph.json_paths
    hints = _Hints(graph)

    def at(p: Problem, key: str) -> Problem:
        path = jp.get(key)
        if path and not p.json_path:
            return Problem(p.kind, p.message, p.node, p.port, path)
        return p

    for name, blk in graph.nodes.items():
        if _unknown(blk):
            problems.append(at(Problem("unknown_block", f"no block registered as {blk.name!r}", name), f"node:{name}"))
        elif isinstance(blk, Composite):
            problems.extend(at(p.nested(name), f"node:{name}") for p in blk.problems())

    fed: dict[tuple[str, str], str] = {}
    for i, (dst, src) in enumerate(graph.sources.items()):
        problems.extend(at(p, f"edge:{i}") for p in edge_problems(graph, src, dst, hints))
        fed[dst] = f"edge from {src[0]}.{src[1]}"

    for name in [*graph.exposed_inputs, *graph.exposed_outputs]:
        if name == "components":
            where = f"input:{name}" if name in graph.exposed_inputs else f"output:{name}"
            problems.append(at(Problem("bad_structure", "'components' is reserved (graph(components=...)); rename this port", port=name), where))

    for name, gi in graph.exposed_inputs.items():
        first_type = None
        for node, port in gi.targets:
            target = graph.nodes.get(node)
            if target is None:
                problems.append(at(_no_node(graph, node, f"graph input {name!r} target", hints), f"input:{name}"))
                continue
            if _unknown(target):
                continue
            inp = target.inputs.get(port)
            if inp is None:
                problems.append(at(_no_port(graph, node, port, "inputs"), f"input:{name}"))
                continue
            if (node, port) in fed:
                problems.append(
                    at(Problem("bad_structure", f"fed twice: by graph input {name!r} and {fed[(node, port)]}", node, port), f"input:{name}")
                )
            fed[(node, port)] = f"graph input {name!r}"
            if first_type is None:
                first_type = inp.type
            elif not (is_compatible(first_type, inp.type) or is_compatible(inp.type, first_type)):
                problems.append(
                    at(
                        Problem(
                            "type_mismatch",
                            f"graph input {name!r} feeds {type_name(first_type)} elsewhere but "
                            f"{node}.{port} expects {type_name(inp.type)}",
                            node,
                            port,
                        ),
                        f"input:{name}",
                    )
                )
        if gi.default is not MISSING and gi.default is not None and first_type is not None:
            try:
                validate_value(first_type, gi.default)
            except ValueError as exc:
                problems.append(at(Problem("type_mismatch", f"default of graph input {name!r} {exc}", port=name), f"input:{name}"))

    for name, (node, port) in graph.exposed_outputs.items():
        source = graph.nodes.get(node)
        if source is None:
            problems.append(at(_no_node(graph, node, f"graph output {name!r} source", hints), f"output:{name}"))
        elif not _unknown(source) and port not in source.outputs:
            problems.append(at(_no_port(graph, node, port, "outputs"), f"output:{name}"))

    for name, blk in graph.nodes.items():
        if _unknown(blk):
            continue
        for spec in blk.inputs.values():
            if spec.required and (name, spec.name) not in fed:
                better = hints.source((name, spec.name), spec.type)
                fix = f"connect {better} or expose it as a graph input" if better else "connect an output or expose it as a graph input"
                problems.append(
                    at(Problem("unconnected_input", f"required input ({spec.type_name}) is not connected; {fix}", name, spec.name), f"node:{name}")
                )

    problems.extend(cycle_problems(graph))
    problems.extend(_conflicts(graph))
    return problems


def cycle_problems(graph: GraphCore) -> list[Problem]:
    dg = nx.DiGraph()
    dg.add_nodes_from(graph.nodes)
    dg.add_edges_from((s[0], d[0]) for d, s in graph.sources.items() if s[0] in graph.nodes and d[0] in graph.nodes)
    problems = []
    for scc in nx.strongly_connected_components(dg):
        if len(scc) == 1:
            (only,) = scc
            if not dg.has_edge(only, only):
                continue
        cycle = nx.find_cycle(dg.subgraph(scc))
        path = " -> ".join([e[0] for e in cycle] + [cycle[0][0]])
        first = sorted(scc)[0]
        problems.append(Problem("cycle", f"cycle {path}; break it (a Loop carries values between steps)", first))
    return problems


def walk_leaves(block: Block, prefix: str = "") -> Iterator[tuple[str, Block]]:
    """Every leaf block inside ``block`` with its node path (``"denoise/guider"``)."""
    children = getattr(block, "child_nodes", None)
    if children is None:
        yield prefix, block
        return
    for name, child in children().items():
        yield from walk_leaves(child, f"{prefix}/{name}" if prefix else name)


def _conflicts(graph: GraphCore) -> list[Problem]:
    seen: dict[str, tuple[str, str]] = {}
    problems = []
    for name, blk in graph.nodes.items():
        if blk.is_composite:
            continue  # nested graphs report their own; cross-level clashes show at first use
        for cname, ref in blk.components.items():
            expected = ref.expected_name
            if cname in seen and expected != "Any" and seen[cname][1] != "Any" and seen[cname][1] != expected:
                other, other_type = seen[cname]
                problems.append(
                    Problem(
                        "component_conflict",
                        f"component {cname!r} expected as {expected} here but as {other_type} by {other}",
                        name,
                    )
                )
            seen.setdefault(cname, (name, expected))
    return problems


def component_problems(graph: Block, provider: Mapping[str, Any]) -> list[Problem]:
    """Components the graph needs that the provider does not have (checked with ``in`` only,
    so a lazy ComponentsManager loads nothing)."""
    users: dict[str, list[str]] = {}
    expected: dict[str, str] = {}
    for path, leaf in walk_leaves(graph):
        for cname, ref in leaf.components.items():
            users.setdefault(cname, []).append(path)
            expected.setdefault(cname, ref.expected_name)
    problems = []
    for cname, nodes in users.items():
        if cname not in provider:
            problems.append(
                Problem(
                    "missing_component",
                    f"component {cname!r} ({expected[cname]}) is missing from the provider; needed by {', '.join(nodes)}",
                    nodes[0],
                    cname,
                )
            )
    return problems
