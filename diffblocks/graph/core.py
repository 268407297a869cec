"""``GraphCore``: the structure of a graph (named nodes, explicit edges ``"node.port" -> "node.port"``,
named inputs and outputs), its checks and its edits; everything a module below the public
``Graph`` needs. ``diffblocks.graph.graph.Graph`` adds compiling, running, files and pictures.

A graph is itself a Block (its ports are its exposed inputs and outputs), so graphs nest.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from diffblocks.blocks.base import Block
from diffblocks.blocks.errors import GraphError, Problem
from diffblocks.blocks.ports import MISSING, PORT_NAME, ComponentRef, Port
from diffblocks.graph import _state
from diffblocks.graph.cache import MemoCache
from diffblocks.graph.composite import Composite
from diffblocks.graph.editing import EditingMixin, problem_key
from diffblocks.graph.parts import GraphInput, split_ref
from diffblocks.graph.validate import component_problems, edge_problems, graph_problems

if TYPE_CHECKING:
    from diffblocks.graph.graph import Graph

_T = TypeVar("_T")

__all__ = ["GraphCore", "graph_class", "register_graph_class"]

# The modules below the public ``Graph`` (jsonio loading a file, compose.sequential, a Loop or
# Switch wrapping a plain block) must build full graphs without importing graph.py, which imports
# them: graph.py registers ``Graph`` here as it is defined. The package's __init__ imports graph.py,
# so the class is registered before any code can ask for it.
_graph_class: type[Graph] | None = None


def register_graph_class(cls: type[Graph]) -> None:
    """Make ``cls`` the class lower modules build graphs with (graph.py passes ``Graph``)."""
    global _graph_class
    _graph_class = cls


def graph_class() -> type[Graph]:
    """The public ``Graph`` class, for modules that build graphs and cannot import it."""
    if _graph_class is None:  # pragma: no cover - importing any graph module imports graph.py first
        raise RuntimeError("diffblocks.graph.graph has not been imported")
    return _graph_class


class GraphCore(EditingMixin, Composite):
    """A dataflow graph of blocks: its structure, checks and edits (see ``Graph`` for the whole API)."""

    def __init__(self, name: str = "graph", description: str = "") -> None:
        super().__init__(name, description)
        self.nodes: dict[str, Block] = {}
        self._edges: dict[tuple[str, str], tuple[str, str]] = {}
        self._inputs: dict[str, GraphInput] = {}
        self._outputs: dict[str, tuple[str, str]] = {}
        self.json_paths: dict[str, str] = {}
        self.code: list[str] = []  # repo files registering custom blocks (see diffblocks.sharing)
        self._memo: dict[str, tuple[int, Any]] = {}
        self._cache: Any = None

    def add(self, node: str, block: Block | str, config: Mapping[str, Any] | None = None) -> Self:
        """Add a node running ``block`` (a Block or a registered name), optionally configured."""
        if not isinstance(node, str) or not PORT_NAME.match(node):
            raise GraphError([Problem("bad_structure", f"node name {node!r} must be an identifier", node)])
        if node in self.nodes:
            raise GraphError([Problem("duplicate_name", f"a node named {node!r} already exists", node)])
        self.nodes[node] = self._resolve(node, block, config)
        _state.touch()
        return self

    def _resolve(self, node: str, block: Block | str, config: Mapping[str, Any] | None) -> Block:
        if isinstance(block, str):
            from diffblocks.registry.blocks import get_block

            try:
                block = get_block(block)
            except GraphError as exc:
                raise GraphError([Problem(p.kind, p.message, node) for p in exc.problems]) from None
        if isinstance(block, type) and issubclass(block, Block):
            block = block()
        if not isinstance(block, Block):
            raise GraphError([Problem("unknown_block", f"expected a Block or registered name, got {block!r}", node)])
        if block.is_composite and _contains(block, self):
            raise GraphError([Problem("cycle", "a graph cannot contain itself", node)])
        if config:
            try:
                block = block.with_config(config)
            except GraphError as exc:
                raise GraphError([Problem(p.kind, p.message, node, p.port) for p in exc.problems]) from None
        return block

    def connect(self, source: str, target: str) -> Self:
        """Add the edge ``"a.out" -> "b.in"``. Checked at once: both ports exist, types are
        compatible, the input is not already fed, and no cycle is created."""
        src, dst = split_ref(source, "source"), split_ref(target, "target")
        problems = self._edge_problems(src, dst)
        if dst in self._edges or any(dst in gi.targets for gi in self._inputs.values()):
            problems.append(Problem("bad_structure", "input is already connected; remove that edge first", *dst))
        if not problems and self._reaches(dst[0], src[0]):
            problems.append(Problem("cycle", f"edge {source} -> {target} would close a cycle", *dst))
        if problems:
            raise GraphError(problems, title=f"cannot connect {source} -> {target}")
        self._edges[dst] = src
        _state.touch()
        return self

    def disconnect(self, target: str) -> Self:
        """Remove the edge feeding input ``"b.in"``."""
        dst = split_ref(target, "target")
        if self._edges.pop(dst, None) is None:
            raise GraphError([Problem("unknown_port", "no edge feeds this input", *dst)])
        _state.touch()
        return self

    def expose_input(
        self, name: str, *targets: str, default: Any = MISSING, description: str = ""
    ) -> Self:
        """Make graph input ``name`` feed the node inputs ``targets`` (``"node.port"`` each).
        Exposing an existing name again adds targets. The input is optional when ``default`` is
        given or every target has a default; when it is not given, every target receives the
        same value: ``default``, else the first target's default."""
        if not PORT_NAME.match(name) or name == "components":
            raise GraphError([Problem("bad_structure", f"graph input name {name!r} must be an identifier", port=name)])
        entry = self._inputs.setdefault(name, GraphInput())
        for target in targets:
            dst = split_ref(target, "target")
            if dst in self._edges:
                raise GraphError([Problem("bad_structure", "input is already fed by an edge", *dst)])
            if dst not in entry.targets:
                entry.targets.append(dst)
        if default is not MISSING:
            entry.default = default
        if description:
            entry.description = description
        _state.touch()
        return self

    def expose_output(self, name: str, source: str) -> Self:
        """Make node output ``source`` (``"node.port"``) the graph output ``name``."""
        if not PORT_NAME.match(name) or name == "components":
            raise GraphError([Problem("bad_structure", f"graph output name {name!r} must be an identifier", port=name)])
        self._outputs[name] = split_ref(source, "source")
        _state.touch()
        return self

    def child_nodes(self) -> dict[str, Block]:
        return self.nodes

    def enter(self, node: str, rest: Sequence[str], path: str) -> tuple[GraphCore, int]:
        return self, 0

    @property
    def edges(self) -> list[tuple[str, str]]:
        """Every edge as ``("a.out", "b.in")``, in the order they were added."""
        return [(f"{s[0]}.{s[1]}", f"{d[0]}.{d[1]}") for d, s in self._edges.items()]

    @property
    def graph_inputs(self) -> dict[str, GraphInput]:
        return dict(self._inputs)

    # Read-only views of the wiring, in node/port pairs, for the modules that compile, check,
    # select and draw a graph (they never reach into the private dicts).
    @property
    def sources(self) -> Mapping[tuple[str, str], tuple[str, str]]:
        """``(node, input) -> (node, output)`` for every edge, in the order they were added."""
        return MappingProxyType(self._edges)

    @property
    def exposed_inputs(self) -> Mapping[str, GraphInput]:
        """Graph input name -> the node inputs it feeds (with its default and description)."""
        return MappingProxyType(self._inputs)

    @property
    def exposed_outputs(self) -> Mapping[str, tuple[str, str]]:
        """Graph output name -> the ``(node, output)`` it comes from."""
        return MappingProxyType(self._outputs)

    def load_wiring(
        self,
        sources: Mapping[tuple[str, str], tuple[str, str]],
        inputs: Mapping[str, GraphInput],
        outputs: Mapping[str, tuple[str, str]],
    ) -> None:
        """Set edges, graph inputs and outputs in one go, unchecked: for loaders that build a graph
        from a file and then validate it once (a ``connect`` per edge re-checks the whole graph)."""
        self._edges.update(sources)
        self._inputs.update(inputs)
        self._outputs.update(outputs)
        if self._memo:  # something was derived from the old wiring; a graph being loaded has nothing yet
            _state.touch()

    @property
    def graph_outputs(self) -> dict[str, str]:
        return {n: f"{s[0]}.{s[1]}" for n, s in self._outputs.items()}

    def _cached(self, key: str, compute: Callable[[], _T]) -> _T:
        hit = self._memo.get(key)
        if hit is not None and hit[0] == _state.revision():
            value: _T = hit[1]
            return value
        value = compute()
        self._memo[key] = (_state.revision(), value)
        return value

    def derive_inputs(self) -> dict[str, Port]:
        return self._cached("inputs", self._compute_inputs)

    def derive_outputs(self) -> dict[str, Port]:
        return self._cached("outputs", self._compute_outputs)

    def derive_memoise(self) -> bool:
        return all(b.memoise for b in self.nodes.values())

    def _compute_inputs(self) -> dict[str, Port]:
        ports = {}
        for name, gi in self._inputs.items():
            targets = [t for n, p in gi.targets if (t := self._port_of(n, p, "inputs")) is not None]
            tp = targets[0].type if targets else Any
            if gi.required:
                default = MISSING
            elif gi.default is not MISSING:
                default = gi.default
            elif targets and all(not t.required for t in targets):
                default = targets[0].default
            else:
                default = MISSING
            desc = gi.description or next((t.description for t in targets if t.description), "")
            ports[name] = Port(name, tp, default, desc)
        return ports

    def _compute_outputs(self) -> dict[str, Port]:
        ports = {}
        for name, (n, p) in self._outputs.items():
            src = self._port_of(n, p, "outputs")
            ports[name] = Port(name, src.type if src else Any, MISSING, src.description if src else "")
        return ports

    def _port_of(self, node: str, port: str, side: str) -> Port | None:
        blk = self.nodes.get(node)
        return None if blk is None else getattr(blk, side).get(port)

    def required_components_refs(self) -> dict[str, ComponentRef]:
        def compute() -> dict[str, ComponentRef]:
            found: dict[str, ComponentRef] = {}
            for blk in self.nodes.values():
                for name, ref in blk.required_components().items():
                    found.setdefault(name, ref)
            return found

        return self._cached("components", compute)

    def required_components(self) -> dict[str, ComponentRef]:
        """Every component the graph's blocks need: ``{name: ComponentRef(name, expected)}``."""
        return dict(self.required_components_refs())

    @property
    def identity(self) -> tuple[Any, ...]:
        def compute() -> tuple[Any, ...]:
            nodes = tuple(
                (n, b.identity, json.dumps(b.config_overrides, sort_keys=True, default=repr))
                for n, b in self.nodes.items()
            )
            ins = tuple((n, tuple(g.targets), repr(g.default)) for n, g in self._inputs.items())
            return ("graph", nodes, tuple(self._edges.items()), ins, tuple(self._outputs.items()))

        return self._cached("identity", compute)

    def _edge_problems(self, src: tuple[str, str], dst: tuple[str, str]) -> list[Problem]:
        return edge_problems(self, src, dst)

    def _reaches(self, start: str, goal: str) -> bool:
        """Whether ``goal`` is downstream of (or equal to) ``start``."""
        if start == goal:
            return True
        children: dict[str, list[str]] = {}
        for d, s in self._edges.items():
            children.setdefault(s[0], []).append(d[0])
        seen, todo = {start}, [start]
        while todo:
            for nxt in children.get(todo.pop(), ()):
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    def problems(self, components: Mapping[str, Any] | None = None) -> list[Problem]:
        """Every problem of the graph (empty when valid); ``components`` also checks presence."""
        found = self._cached("problems", lambda: graph_problems(self))
        if components is not None:
            found = found + component_problems(self, components)
        return found

    def _problem_keys(self) -> list[tuple[Any, ...]]:
        return [problem_key(p) for p in self.problems()]

    def validate(self, components: Mapping[str, Any] | None = None) -> Self:
        """Raise one ``GraphError`` listing every problem; return the graph when valid."""
        found = self.problems(components)
        if found:
            raise GraphError(found, title=f"graph {self.name!r} is invalid")
        return self

    @classmethod
    def wrap(cls, block: Block, name: str | None = None) -> Self:
        """A one-node graph exposing every port of ``block`` under its own name."""
        node = "node"
        g = cls(name or block.label)
        g.add(node, block)
        for port in block.inputs:
            g.expose_input(port, f"{node}.{port}")
        for port in block.outputs:
            g.expose_output(port, f"{node}.{port}")
        return g

    @property
    def cache(self) -> Any:
        """The memo cache shared by this graph's plans (survives edits and recompiles)."""
        if self._cache is None:
            self._cache = MemoCache()
        return self._cache

    @cache.setter
    def cache(self, value: Any) -> None:
        self._cache = value

    def __copy__(self) -> Self:
        clone = type(self)(self.name, self.description)
        clone.nodes, clone._edges, clone._inputs, clone._outputs = self._snapshot()
        clone.json_paths = dict(self.json_paths)
        clone.code = list(self.code)
        clone._cache = self.cache  # copies (and selected graphs) share memoised results
        return clone

    def copy(self) -> Self:
        return self.__copy__()

    def __repr__(self) -> str:
        return f"<Graph {self.name!r}: {len(self.nodes)} nodes, {len(self._edges)} edges>"


def _contains(block: Block, target: Block) -> bool:
    """Whether ``target`` is ``block`` or nested anywhere inside it."""
    if block is target:
        return True
    if not isinstance(block, Composite):
        return False
    body = getattr(block, "body", None)  # a Loop's body graph itself, not only its nodes
    if isinstance(body, Block) and _contains(body, target):
        return True
    return any(_contains(child, target) for child in block.child_nodes().values())
