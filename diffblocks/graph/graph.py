"""``Graph``: named nodes, explicit edges ``"node.port" -> "node.port"``, named inputs and outputs.

A Graph is itself a Block (its ports are its exposed inputs and outputs), so graphs nest.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from diffblocks.blocks.base import Block
from diffblocks.blocks.errors import GraphError, Problem
from diffblocks.fileio import atomic_write_text
from diffblocks.blocks.ports import MISSING, PORT_NAME, ComponentRef, Port
from diffblocks.graph import _state
from diffblocks.graph.composite import Composite
from diffblocks.graph.editing import EditingMixin, problem_key

if TYPE_CHECKING:
    from diffblocks.graph.plan import Plan

_T = TypeVar("_T")

__all__ = ["Composite", "Graph", "GraphInput", "UnknownBlock", "split_ref"]


def split_ref(ref: str, what: str = "port reference") -> tuple[str, str]:
    """``"node.port"`` -> ``("node", "port")``; ``GraphError`` when malformed."""
    if not isinstance(ref, str) or ref.count(".") != 1:
        raise GraphError([Problem("unknown_port", f"{what} {ref!r} must look like 'node.port'")])
    node, port = ref.split(".")
    if not node or not port:
        raise GraphError([Problem("unknown_port", f"{what} {ref!r} must look like 'node.port'")])
    return node, port


@dataclass
class GraphInput:
    """A named graph input feeding one or more node inputs."""

    targets: list[tuple[str, str]] = field(default_factory=list)
    default: Any = MISSING
    description: str = ""
    #: Required although every target is optional: e.g. ``image`` once ``select`` picked img2img.
    required: bool = False


class UnknownBlock(Block):
    """Placeholder for a node whose block name is not registered (kept so that every other
    problem of a loaded file can still be reported, and so the file round-trips)."""

    _abstract = True

    def __init__(self, name: str, config: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.inputs = {}
        self.outputs = {}
        self.components = {}
        self.config_fields = {}
        self.config = dict(config or {})
        self.config_overrides = dict(self.config)

    def forward(self, **kwargs: Any) -> Any:
        raise GraphError([Problem("unknown_block", f"no block registered as {self.name!r}")])


class Graph(EditingMixin, Composite):
    """A dataflow graph of blocks.

    Build::

        g = Graph("txt2img")
        g.add("encode", "encode_prompt")                # a registered name, or a Block
        g.add("cfg", "classifier_free_guidance", config={"guidance_scale": 7.5})
        g.connect("encode.prompt_embeds", "denoise.prompt_embeds")
        g.expose_input("prompt", "encode.prompt")
        g.expose_output("image", "decode.image")
        g.validate()

    Run: ``g(components=cm, prompt="a cat")`` or ``g.run(inputs={...}, components=cm)``.
    """

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

    def add(self, node: str, block: Block | str, config: Mapping[str, Any] | None = None) -> Graph:
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

    def connect(self, source: str, target: str) -> Graph:
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

    def disconnect(self, target: str) -> Graph:
        """Remove the edge feeding input ``"b.in"``."""
        dst = split_ref(target, "target")
        if self._edges.pop(dst, None) is None:
            raise GraphError([Problem("unknown_port", "no edge feeds this input", *dst)])
        _state.touch()
        return self

    def expose_input(
        self, name: str, *targets: str, default: Any = MISSING, description: str = ""
    ) -> Graph:
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

    def expose_output(self, name: str, source: str) -> Graph:
        """Make node output ``source`` (``"node.port"``) the graph output ``name``."""
        if not PORT_NAME.match(name) or name == "components":
            raise GraphError([Problem("bad_structure", f"graph output name {name!r} must be an identifier", port=name)])
        self._outputs[name] = split_ref(source, "source")
        _state.touch()
        return self

    def child_nodes(self) -> dict[str, Block]:
        return self.nodes

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
        from diffblocks.graph.validate import edge_problems

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
        from diffblocks.graph.validate import graph_problems

        found = self._cached("problems", lambda: graph_problems(self))
        if components is not None:
            from diffblocks.graph.validate import component_problems

            found = found + component_problems(self, components)
        return found

    def _problem_keys(self) -> list[tuple[Any, ...]]:
        return [problem_key(p) for p in self.problems()]

    def validate(self, components: Mapping[str, Any] | None = None) -> Graph:
        """Raise one ``GraphError`` listing every problem; return the graph when valid."""
        found = self.problems(components)
        if found:
            raise GraphError(found, title=f"graph {self.name!r} is invalid")
        return self

    @classmethod
    def wrap(cls, block: Block, name: str | None = None) -> Graph:
        """A one-node graph exposing every port of ``block`` under its own name."""
        node = "node"
        g = cls(name or block.label)
        g.add(node, block)
        for port in block.inputs:
            g.expose_input(port, f"{node}.{port}")
        for port in block.outputs:
            g.expose_output(port, f"{node}.{port}")
        return g

    @classmethod
    def sequential(
        cls,
        steps: Any,
        name: str = "graph",
        rename: Mapping[str, str] | None = None,
        outputs: Any = None,
    ) -> Graph:
        """Auto-wire blocks by port name; see ``compose.sequential``."""
        from diffblocks.graph.compose import sequential

        return sequential(steps, name=name, rename=rename, outputs=outputs, graph_cls=cls)

    chain = sequential

    def select(self, **present: Any) -> Graph:
        """The graph that would run given these inputs: every Switch replaced by its chosen branch."""
        from diffblocks.graph.select import select

        return select(self, present)

    @property
    def cache(self) -> Any:
        """The memo cache shared by this graph's plans (survives edits and recompiles)."""
        if self._cache is None:
            from diffblocks.graph.cache import MemoCache

            self._cache = MemoCache()
        return self._cache

    @cache.setter
    def cache(self, value: Any) -> None:
        self._cache = value

    def compile(self, cache: Any = None) -> Plan:
        """Validate and compile into a ``Plan`` (cached until the graph changes)."""
        from diffblocks.graph.plan import compile_graph

        if cache is None:
            return self._cached("plan", lambda: compile_graph(self, cache=self.cache))
        return compile_graph(self, cache=cache)

    def run(self, inputs: Mapping[str, Any] | None = None, components: Mapping[str, Any] | None = None, **options: Any) -> Any:
        """Compile (once) and run; returns a ``Result`` with every graph output.
        Options: progress, callbacks, on_node_end, grad, cache, generator (see ``Plan.run``)."""
        return self.compile().run(inputs=inputs, components=components, **options)

    def __call__(self, components: Mapping[str, Any] | None = None, **inputs: Any) -> Any:
        """Run like a function: one output -> the value, several -> a ``Result``."""
        return self.compile().call(components=components, inputs=inputs)

    def to_dict(self) -> dict[str, Any]:
        from diffblocks.graph.jsonio import graph_to_document

        return graph_to_document(self)

    def to_json(self, indent: int | None = 2) -> str:
        """The graph as versioned JSON text (exact round-trip with ``from_json``); small objects and
        arrays stay on one line (``indent=None``: all on one line)."""
        document = self.to_dict()
        try:
            if indent is None:
                return json.dumps(document, ensure_ascii=False, allow_nan=False)
            from .jsonfmt import dumps_compact

            return dumps_compact(document, indent=indent)
        except ValueError as exc:  # NaN / infinity in a config or default
            raise GraphError([Problem("bad_config", f"cannot be written as JSON: {exc}")], title=f"graph {self.name!r} cannot be saved") from None

    @classmethod
    def from_json(cls, text_or_path: str | Path, trust_remote_code: bool = False) -> Graph:
        """Load a graph from JSON text or a file path. ``GraphError`` lists every problem.
        (``trust_remote_code`` is the hook for import paths in files; none are honoured yet.)"""
        from diffblocks.graph.jsonio import load_graph

        return load_graph(text_or_path, trust_remote_code=trust_remote_code)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Graph:
        from diffblocks.graph.jsonio import graph_from_document

        return graph_from_document(document)

    def save(self, path: str | Path) -> None:
        """Write the graph file atomically: a failed save leaves an existing file as it was."""
        atomic_write_text(path, self.to_json() + "\n")

    def save_pretrained(self, save_directory: str | Path, *, code_root: str | Path | None = None) -> Path:
        """Write ``graph.json``, a generated ``README.md`` model card and the ``code`` files (see docs/sharing.md)."""
        from .repo import save_graph

        return save_graph(self, save_directory, code_root=code_root)

    @classmethod
    def from_pretrained(cls, repo_id_or_dir: str | Path, revision: str | None = None,
                        trust_remote_code: bool = False, **hub: Any) -> Graph:
        """Load a graph repo: a local folder, or a Hub repo at ``revision`` resolved to one commit.
        Its ``code`` files are imported only with ``trust_remote_code=True``."""
        from .repo import graph_from_pretrained

        return graph_from_pretrained(repo_id_or_dir, revision=revision, trust_remote_code=trust_remote_code, **hub)

    def push_to_hub(self, repo_id: str, **options: Any) -> str:
        """Upload as ONE commit (repo created if needed); options: commit_message, private, token,
        branch, code_root. Returns the commit sha."""
        from .repo import push_graph

        return push_graph(self, repo_id, **options)

    def to_mermaid(self) -> str:
        from diffblocks.graph.export import to_mermaid

        return to_mermaid(self)

    def to_dot(self) -> str:
        from diffblocks.graph.export import to_dot

        return to_dot(self)

    def summary(self) -> str:
        """A readable text summary: inputs, nodes with ports/types/components, outputs."""
        from diffblocks.graph.export import to_text

        return to_text(self)

    def __copy__(self) -> Graph:
        clone = Graph(self.name, self.description)
        clone.nodes, clone._edges, clone._inputs, clone._outputs = self._snapshot()
        clone.json_paths = dict(self.json_paths)
        clone.code = list(self.code)
        clone._cache = self.cache  # copies (and selected graphs) share memoised results
        return clone

    def copy(self) -> Graph:
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
