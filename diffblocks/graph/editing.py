"""Editing a graph: replace, insert, remove — each re-validates, and a failed edit is undone."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..blocks.base import Block
from ..blocks.errors import GraphError, Problem
from ..blocks.ports import Port
from . import _state

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["EditingMixin", "problem_key"]


def problem_key(p: Problem) -> tuple[Any, ...]:
    return (p.kind, p.node, p.port, p.message)


class EditingMixin:
    """The editing half of ``Graph`` (kept apart so graph.py stays readable)."""

    nodes: dict[str, Block]
    _edges: dict[tuple[str, str], tuple[str, str]]
    _inputs: dict[str, Any]
    _outputs: dict[str, tuple[str, str]]

    @contextmanager
    def edit(self) -> Iterator[Graph]:
        """Group several edits; the graph is validated once at the end. If the result has new
        problems, every edit in the block is undone and ``GraphError`` names what broke."""
        snapshot = self._snapshot()
        before = set(self._problem_keys())
        depth = self.__dict__.get("_edit_depth", 0)
        self.__dict__["_edit_depth"] = depth + 1
        try:
            yield self
        except BaseException:
            self._restore(snapshot)
            raise
        finally:
            self.__dict__["_edit_depth"] = depth
        if depth == 0:
            new = [p for p in self.problems() if problem_key(p) not in before]
            if new:
                self._restore(snapshot)
                raise GraphError(new, title="edit rejected, graph unchanged")

    def replace(self, node: str, block: Block | str, config: Mapping[str, Any] | None = None) -> Graph:
        """Swap the block of ``node`` keeping its edges (e.g. another decoder)."""
        self._require_node(node)
        with self.edit():
            self.nodes[node] = self._resolve(node, block, config)
            _state.touch()
        return self

    def remove(self, node: str) -> Graph:
        """Remove ``node`` and every edge, input target and output that touches it."""
        self._require_node(node)
        with self.edit():
            del self.nodes[node]
            self._edges = {d: s for d, s in self._edges.items() if d[0] != node and s[0] != node}
            for gi in self._inputs.values():
                gi.targets = [t for t in gi.targets if t[0] != node]
            self._outputs = {n: s for n, s in self._outputs.items() if s[0] != node}
            _state.touch()
        return self

    def insert(
        self,
        node: str,
        block: Block | str,
        edge: tuple[str, str],
        *,
        input: str | None = None,
        output: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> Graph:
        """Put a new node on an existing edge ``(source, target)``: source -> node.input and
        node.output -> target. ``input``/``output`` default to the port of the same name as the
        edge's ends, else the node's only input / output."""
        from .graph import split_ref

        src, dst = split_ref(edge[0], "source"), split_ref(edge[1], "target")
        if self._edges.get(dst) != src:
            raise GraphError([Problem("unknown_port", f"no edge {edge[0]} -> {edge[1]} to insert into", *dst)])
        resolved = self._resolve(node, block, config)
        in_port = input or _pick_port(resolved.inputs, src[1], "input", node)
        out_port = output or _pick_port(resolved.outputs, dst[1], "output", node)
        with self.edit():
            if node in self.nodes:
                raise GraphError([Problem("duplicate_name", f"a node named {node!r} already exists", node)])
            self.nodes[node] = resolved
            del self._edges[dst]
            self._edges[(node, in_port)] = src
            self._edges[dst] = (node, out_port)
            _state.touch()
        return self

    def _require_node(self, node: str) -> None:
        if node not in self.nodes:
            close = difflib.get_close_matches(node, list(self.nodes), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise GraphError([Problem("unknown_port", f"no node named {node!r}{hint}", node)])

    def _snapshot(self) -> tuple[Any, ...]:
        from .graph import GraphInput

        return (
            dict(self.nodes),
            dict(self._edges),
            {n: GraphInput(list(g.targets), g.default, g.description) for n, g in self._inputs.items()},
            dict(self._outputs),
        )

    def _restore(self, snap: tuple[Any, ...]) -> None:
        self.nodes, self._edges, self._inputs, self._outputs = snap
        _state.touch()


def _pick_port(ports: Mapping[str, Port], same_as: str, side: str, node: str) -> str:
    if same_as in ports:
        return same_as
    if len(ports) == 1:
        return next(iter(ports))
    raise GraphError([Problem("unknown_port", f"say which {side} to use: {sorted(ports)}", node)])
