"""Editing a graph: replace, insert, remove — each re-validates, and a failed edit is undone."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Self

from diffblocks.blocks.base import Block
from diffblocks.blocks.errors import GraphError, Problem
from diffblocks.blocks.ports import Port
from diffblocks.graph import _state
from diffblocks.graph.composite import Composite
from diffblocks.graph.parts import GraphInput, split_ref

if TYPE_CHECKING:
    from diffblocks.graph.core import GraphCore

__all__ = ["EditingMixin", "problem_key"]


def problem_key(p: Problem) -> tuple[Any, ...]:
    return (p.kind, p.node, p.port, p.message)


class EditingMixin:
    """The editing half of the graph class (kept apart so core.py stays readable)."""

    nodes: dict[str, Block]
    _edges: dict[tuple[str, str], tuple[str, str]]
    _inputs: dict[str, Any]
    _outputs: dict[str, tuple[str, str]]

    if TYPE_CHECKING:  # provided by GraphCore

        def problems(self, components: Mapping[str, Any] | None = None) -> list[Problem]: ...

        def _problem_keys(self) -> list[tuple[Any, ...]]: ...

        def _resolve(self, node: str, block: Block | str, config: Mapping[str, Any] | None) -> Block: ...

    @contextmanager
    def edit(self) -> Iterator[Self]:
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

    def locate(self, path: str) -> tuple[GraphCore, str]:
        """The graph holding node ``path`` and the node's name there. A path walks into
        composites: ``"denoise/guide"`` (or ``"denoise.guide"``) is node ``guide`` of loop
        ``denoise``'s body; ``"start/img2img/scale"`` is inside branch ``img2img`` of a Switch."""
        parts = re.split(r"[/.]", path)
        graph: Any = self
        i = 0
        while i < len(parts) - 1:
            graph._require_node(parts[i])
            blk = graph.nodes[parts[i]]
            if not isinstance(blk, Composite):
                raise GraphError([Problem("unknown_port", f"node {parts[i]!r} is a block, not a graph, loop or switch ({path!r})", parts[i])])
            graph, used = blk.enter(parts[i], parts[i + 1 : -1], path)
            i += 1 + used
        return graph, parts[-1]

    @contextmanager
    def _nested(self, inner: GraphCore) -> Iterator[None]:
        """An edit made inside ``inner`` (a nested graph) must not break this graph either."""
        before = set(self._problem_keys())
        snapshot = inner._snapshot()
        yield
        new = [p for p in self.problems() if problem_key(p) not in before]
        if new:
            inner._restore(snapshot)
            raise GraphError(new, title="edit rejected, graph unchanged")

    def replace(self, node: str, block: Block | str, config: Mapping[str, Any] | None = None) -> Self:
        """Swap the block of ``node`` keeping its edges (e.g. another decoder). ``node`` may be a
        path into a composite (``"denoise/guide"``)."""
        inner, name = self.locate(node)
        if inner is not self:
            with self._nested(inner):
                inner.replace(name, block, config)
            return self
        self._require_node(node)
        with self.edit():
            self.nodes[node] = self._resolve(node, block, config)
            _state.touch()
        return self

    def remove(self, node: str) -> Self:
        """Remove ``node`` and every edge, input target and output that touches it (a path
        into a composite is fine too)."""
        inner, name = self.locate(node)
        if inner is not self:
            with self._nested(inner):
                inner.remove(name)
            return self
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
    ) -> Self:
        """Put a new node on an existing edge ``(source, target)``: source -> node.input and
        node.output -> target. ``input``/``output`` default to the port of the same name as the
        edge's ends, else the node's only input / output. With a path (``"denoise/boost"``)
        the node goes into that composite, and the edge is named in its terms."""
        inner, name = self.locate(node)
        if inner is not self:
            with self._nested(inner):
                inner.insert(name, block, edge, input=input, output=output, config=config)
            return self

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

    def prune_dangling(self, node: str) -> None:
        """Drop the edges and graph-input targets into inputs ``node`` no longer has (after its
        block was swapped for one with fewer inputs, as ``select`` does). Not validated."""
        ins = self.nodes[node].inputs
        self._edges = {d: s for d, s in self._edges.items() if d[0] != node or d[1] in ins}
        for gi in self._inputs.values():
            gi.targets = [t for t in gi.targets if t[0] != node or t[1] in ins]
        _state.touch()

    def drop_unused_inputs(self) -> None:
        """Forget graph inputs that feed nothing any more. Not validated."""
        self._inputs = {n: gi for n, gi in self._inputs.items() if gi.targets}
        _state.touch()

    def _require_node(self, node: str) -> None:
        if node not in self.nodes:
            close = difflib.get_close_matches(node, list(self.nodes), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise GraphError([Problem("unknown_port", f"no node named {node!r}{hint}", node)])

    def _snapshot(self) -> tuple[Any, ...]:
        return (
            dict(self.nodes),
            dict(self._edges),
            {n: GraphInput(list(g.targets), g.default, g.description, g.required) for n, g in self._inputs.items()},
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
