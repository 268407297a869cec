"""The graph file format: versioned, strict, exact round-trip, limits checked before building.

::

    {"format": "diffblocks.graph", "version": 1,
     "graph": {"name": "...", "nodes": {"encode": {"block": "encode_prompt", "version": 1,
                                                    "config": {...}},
                                         "denoise": {"loop": {"over": ..., "item": ..., "carry": {...},
                                                              "body": {<graph>}}},
                                         "pick": {"switch": {"branches": {...}, "when": {...}}},
                                         "sub": {"graph": {<graph>}}},
               "edges": [["encode.prompt_embeds", "denoise.prompt_embeds"], ...],
               "inputs": {"prompt": {"to": ["encode.prompt"]}},
               "outputs": {"image": "decode.image"}}}

A file names registered blocks and their config, never import paths: ``"pkg.mod:fn"`` is
refused (``trust_remote_code`` is the future hook for that, and it is off). A graph shared as a
repo may list, in a top-level ``"code": ["blocks.py"]``, Python files of that repo that register
its blocks; they are imported only by ``diffblocks.sharing`` and only with
``trust_remote_code=True``. Here the list is only checked (relative paths inside the repo) and kept.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, JsonValue, StringConstraints, Tag, ValidationError

from ..blocks.base import Block
from ..blocks.errors import GraphError, Problem
from ..blocks.ports import MISSING
from .composites import Loop, Switch
from .core import GraphCore, graph_class
from .parts import GraphInput, UnknownBlock

if TYPE_CHECKING:
    from .graph import Graph

__all__ = [
    "FORMAT", "VERSION", "LIMITS", "GraphDocument", "graph_json_schema", "write_schema",
    "load_graph", "graph_from_document", "graph_to_document",
]

FORMAT = "diffblocks.graph"
VERSION = 1
#: Checked on the raw JSON before anything is built.
LIMITS = {
    "max_file_bytes": 4 << 20,
    "max_string_chars": 65536,
    "max_depth": 64,
    "max_items": 200_000,
    "max_nodes": 10_000,
}

_IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
Name = Annotated[str, StringConstraints(pattern=_IDENT, max_length=128)]
PortRef = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$", max_length=257)]
# ":attr" is accepted by the pattern only so that an import path gets a clear refusal.
BlockName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z_][\w\-]*(\.[A-Za-z_][\w\-]*)*(:[A-Za-z_]\w*)?$", max_length=200)
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class InputSpec(_Strict):
    """A graph input: the node inputs it feeds, an optional default and description."""

    to: list[PortRef] = Field(min_length=1)
    default: JsonValue = None
    description: str = ""
    required: bool = False


class BlockNode(_Strict):
    """A node running a registered block, with its config."""

    block: BlockName
    version: int | None = Field(default=None, ge=1)
    config: dict[str, JsonValue] = Field(default_factory=dict)


class GraphSpec(_Strict):
    name: str = Field(max_length=200)
    description: str = ""
    nodes: dict[Name, NodeSpec]
    edges: list[Annotated[list[PortRef], Field(min_length=2, max_length=2)]] = Field(default_factory=list)
    inputs: dict[Name, InputSpec] = Field(default_factory=dict)
    outputs: dict[Name, PortRef] = Field(default_factory=dict)


class GraphNode(_Strict):
    graph: GraphSpec


class LoopSpec(_Strict):
    over: Name
    item: Name
    carry: dict[Name, Name] = Field(min_length=1)
    body: GraphSpec
    over_type: Name | None = None
    progress: bool = True


class LoopNode(_Strict):
    loop: LoopSpec


class SwitchSpec(_Strict):
    branches: dict[Name, GraphSpec] = Field(min_length=1)
    when: dict[Name, Name | list[Name]] = Field(default_factory=dict)
    default: Name | None = None
    predicate: BlockName | None = None


class SwitchNode(_Strict):
    switch: SwitchSpec


def _node_kind(value: Any) -> str | None:
    if isinstance(value, Mapping):
        kinds = [k for k in ("block", "graph", "loop", "switch") if k in value]
        return kinds[0] if len(kinds) == 1 else None
    return getattr(value, "_kind", None)


NodeSpec = Annotated[
    Union[
        Annotated[BlockNode, Tag("block")],
        Annotated[GraphNode, Tag("graph")],
        Annotated[LoopNode, Tag("loop")],
        Annotated[SwitchNode, Tag("switch")],
    ],
    Discriminator(
        _node_kind,
        custom_error_type="node_kind",
        custom_error_message="a node is an object with exactly one of the keys block, graph, loop, switch",
    ),
]


#: A repo-relative ``.py`` path: no absolute path, no ``..`` or hidden segment, no backslash.
CodePath = Annotated[
    str,
    StringConstraints(pattern=r"^([A-Za-z0-9_][A-Za-z0-9_.\-]*/)*[A-Za-z0-9_][A-Za-z0-9_.\-]*\.py$", max_length=300),
]


class GraphDocument(_Strict):
    """A diffblocks graph file."""

    model_config = ConfigDict(extra="forbid", strict=True, title="diffblocks graph file")
    format: Literal["diffblocks.graph"]
    version: Literal[1]
    graph: GraphSpec
    code: list[CodePath] = Field(
        default_factory=list, max_length=64,
        description="Python files of the graph's repo (relative paths) that register its blocks; "
        "imported only with trust_remote_code=True",
    )


GraphSpec.model_rebuild()
LoopSpec.model_rebuild()
SwitchSpec.model_rebuild()
GraphNode.model_rebuild()
GraphDocument.model_rebuild()


def graph_json_schema() -> dict[str, Any]:
    """The JSON Schema of graph files (what docs/graph.schema.json holds)."""
    schema = GraphDocument.model_json_schema()
    schema["$id"] = "https://diffblocks.dev/graph.schema.json"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def write_schema(path: str | Path) -> None:
    Path(path).write_text(json.dumps(graph_json_schema(), indent=2, sort_keys=True) + "\n", encoding="utf-8")


class _Pairs(dict[str, Any]):
    """A JSON object that remembers keys given twice."""

    duplicates: list[str]


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = _Pairs()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj:
            obj.duplicates.append(key)
        obj[key] = value
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (numbers must be finite)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf, which NaN/Infinity's refusal must cover too
        raise ValueError(f"{text} is out of range (numbers must be finite)")
    return value


#: Characters refused in every string and key of a graph file: terminal control codes (ANSI
#: escapes would reach the terminal raw when a name is printed) and lone surrogates (not
#: Unicode; the file could never be written back). Tab, newline and carriage return are text.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _unprintable(text: str) -> str | None:
    found = _UNPRINTABLE.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


def _fail(message: str, path: str | None = None, kind: str = "bad_json", source: str = "graph file") -> GraphError:
    return GraphError([Problem(kind, message, json_path=path)], title=f"invalid {source}")


def _check_limits(doc: Any, source: str, title: str = "") -> None:
    """Depth, size, string length and duplicate keys, without recursion."""
    problems: list[Problem] = []
    items = 0
    stack: list[tuple[Any, str, int]] = [(doc, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > LIMITS["max_depth"]:
            raise _fail(f"nested deeper than {LIMITS['max_depth']} levels", path or "$", source=source)
        if isinstance(value, str):
            if len(value) > LIMITS["max_string_chars"]:
                problems.append(Problem("bad_json", f"string of {len(value)} characters (limit {LIMITS['max_string_chars']})", json_path=path or "$"))
            elif bad := _unprintable(value):
                problems.append(Problem("bad_json", f"string holds the control or non-Unicode character {bad}", json_path=path or "$"))
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(Problem("bad_json", f"number {value} is not finite (it cannot be written as JSON)", json_path=path or "$"))
        elif isinstance(value, dict):
            items += len(value)
            for dup in getattr(value, "duplicates", ()):
                kind = "duplicate_name" if path.endswith(("nodes", "inputs", "outputs", "branches")) else "bad_json"
                problems.append(Problem(kind, f"key {dup!r} appears more than once", json_path=f"{path}.{dup}" if path else dup))
            for key, sub in value.items():
                if len(key) > LIMITS["max_string_chars"]:
                    problems.append(Problem("bad_json", f"key of {len(key)} characters", json_path=path or "$"))
                    continue
                if bad := _unprintable(key):
                    problems.append(Problem("bad_json", f"key {key!r} holds the control or non-Unicode character {bad}", json_path=path or "$"))
                    continue
                stack.append((sub, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(value, list):
            items += len(value)
            stack.extend((sub, f"{path}[{i}]", depth + 1) for i, sub in enumerate(value))
        if items > LIMITS["max_items"]:
            raise _fail(f"more than {LIMITS['max_items']} JSON items", source=source)
    if problems:
        raise GraphError(problems, title=f"{source} {title}" if title else f"invalid {source}")


def _loc(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _parse(document: Any, source: str) -> GraphDocument:
    try:
        return GraphDocument.model_validate(document)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(Problem("bad_json", msg, json_path=_loc(err["loc"]) or "$"))
        raise GraphError(problems, title=f"invalid {source}") from None


def load_graph(text_or_path: str | Path, trust_remote_code: bool = False, graph_cls: type[Graph] | None = None) -> Graph:
    """Read a graph from JSON text or a file; ``GraphError`` (never a deep traceback) on any
    malformed, hostile or invalid content."""
    source = "graph file"
    if isinstance(text_or_path, Path) or (isinstance(text_or_path, str) and not text_or_path.lstrip().startswith("{")):
        path = Path(text_or_path)
        source = f"graph file {path}"
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise _fail(f"cannot read: {exc.strerror or exc}", source=source) from None
        if size > LIMITS["max_file_bytes"]:
            raise _fail(f"file is {size} bytes (limit {LIMITS['max_file_bytes']})", source=source)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise _fail(f"cannot read: {exc}", source=source) from None
    else:
        text = text_or_path
        if len(text) > LIMITS["max_file_bytes"]:
            raise _fail(f"text is {len(text)} characters (limit {LIMITS['max_file_bytes']})", source=source)
    try:
        document = json.loads(text, object_pairs_hook=_pairs_hook, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise _fail("nested too deeply to parse", source=source) from None
    except ValueError as exc:
        raise _fail(f"not valid JSON: {exc}", source=source) from None
    return graph_from_document(document, source=source, trust_remote_code=trust_remote_code, graph_cls=graph_cls)


def graph_from_document(
    document: Any, source: str = "graph document", trust_remote_code: bool = False, graph_cls: type[Graph] | None = None
) -> Graph:
    """Build a graph from an already-parsed JSON document (a dict); every graph in it, nested ones
    included, is a ``graph_cls`` (default: the public ``Graph``)."""
    _check_limits(document, source)
    if isinstance(document, Mapping):
        if document.get("format") != FORMAT:
            raise _fail(f"'format' must be {FORMAT!r}", "format", source=source)
        version = document.get("version")
        if type(version) is not int or version != VERSION:  # not True, not 1.0: exactly 1
            raise _fail(f"unsupported version {document.get('version')!r}; this diffblocks reads version {VERSION}", "version", source=source)
    spec = _parse(document, source)
    problems: list[Problem] = []
    counter = [0]
    graph = _build(spec.graph, "graph", problems, counter, trust_remote_code, graph_cls or graph_class())
    if counter[0] > LIMITS["max_nodes"]:
        raise _fail(f"{counter[0]} nodes (limit {LIMITS['max_nodes']})", source=source)
    graph.code = list(spec.code)
    problems.extend(graph.problems())
    if problems:
        raise GraphError(problems, title=f"invalid {source}")
    return graph


def _block_for(name: str, spec: BlockNode, node: str, path: str, problems: list[Problem], trust_remote_code: bool) -> Block:
    from ..registry.blocks import get_block

    if ":" in name and not trust_remote_code:
        problems.append(Problem("unknown_block", "import paths are not allowed in graph files; name a registered block", node, json_path=f"{path}.block"))
        return UnknownBlock(name, spec.config)
    try:
        blk = get_block(name)
    except GraphError:
        return UnknownBlock(name, spec.config)  # reported by validation, with this node's path
    if spec.version is not None and spec.version > blk.version:
        problems.append(Problem("unknown_block", f"file wants {name} v{spec.version}, installed is v{blk.version}", node, json_path=f"{path}.version"))
    if spec.config:
        found = blk.config_problems(spec.config, node)
        if found:
            problems.extend(Problem(p.kind, p.message, node, p.port, f"{path}.config") for p in found)
            return blk
        blk = blk.with_config(spec.config)
    return blk


def _build(spec: GraphSpec, path: str, problems: list[Problem], counter: list[int], trust: bool, cls: type[Graph]) -> Graph:
    graph = cls(spec.name, spec.description)
    for node, nspec in spec.nodes.items():
        counter[0] += 1
        npath = f"{path}.nodes.{node}"
        graph.json_paths[f"node:{node}"] = npath
        if isinstance(nspec, BlockNode):
            blk: Block = _block_for(nspec.block, nspec, node, npath, problems, trust)
        elif isinstance(nspec, GraphNode):
            blk = _build(nspec.graph, f"{npath}.graph", problems, counter, trust, cls)
        elif isinstance(nspec, LoopNode):
            ls = nspec.loop
            body = _build(ls.body, f"{npath}.loop.body", problems, counter, trust, cls)
            over_type: Any = Any
            if ls.over_type is not None:
                from ..blocks.types import port_type_by_name

                try:
                    over_type = port_type_by_name(ls.over_type)
                except KeyError:
                    problems.append(Problem("bad_json", f"unknown port type {ls.over_type!r}", node, json_path=f"{npath}.loop.over_type"))
            blk = Loop(body, ls.over, ls.item, ls.carry, name=node, over_type=over_type, progress=ls.progress)
        else:
            ss = nspec.switch
            branches = {b: _build(g, f"{npath}.switch.branches.{b}", problems, counter, trust, cls) for b, g in ss.branches.items()}
            blk = Switch(branches, when=ss.when, default=ss.default, predicate=ss.predicate, name=node)
        graph.nodes[node] = blk
    edges: dict[tuple[str, str], tuple[str, str]] = {}
    for i, (src, dst) in enumerate(spec.edges):
        s, d = _ref(src), _ref(dst)
        if d in edges:
            problems.append(Problem("bad_structure", f"input already fed by {'.'.join(edges[d])}", d[0], d[1], f"{path}.edges[{i}]"))
            continue
        graph.json_paths[f"edge:{len(edges)}"] = f"{path}.edges[{i}]"
        edges[d] = s
    inputs: dict[str, GraphInput] = {}
    for name, ispec in spec.inputs.items():
        graph.json_paths[f"input:{name}"] = f"{path}.inputs.{name}"
        default = ispec.default if "default" in ispec.model_fields_set else MISSING
        inputs[name] = GraphInput([_ref(t) for t in ispec.to], default, ispec.description, ispec.required)
    outputs: dict[str, tuple[str, str]] = {}
    for name, ref in spec.outputs.items():
        graph.json_paths[f"output:{name}"] = f"{path}.outputs.{name}"
        outputs[name] = _ref(ref)
    graph.load_wiring(edges, inputs, outputs)
    return graph


def _ref(text: str) -> tuple[str, str]:
    """``"node.port"`` as a pair (the schema's pattern guarantees exactly one dot)."""
    node, _, port = text.partition(".")
    return node, port


def graph_to_document(graph: GraphCore) -> dict[str, Any]:
    """The canonical JSON document for ``graph`` (``GraphError`` for unsaveable parts)."""
    problems: list[Problem] = []
    body = _graph_dict(graph, problems, "")
    if problems:
        raise GraphError(problems, title=f"graph {graph.name!r} cannot be saved")
    document = {"format": FORMAT, "version": VERSION, "graph": body}
    if getattr(graph, "code", None):
        document["code"] = list(graph.code)
    _check_limits(document, f"graph {graph.name!r}", title="cannot be saved")  # what load refuses, save refuses
    return document


def _graph_dict(graph: GraphCore, problems: list[Problem], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": graph.name}
    if graph.description:
        out["description"] = graph.description
    out["nodes"] = {n: _node_dict(b, problems, f"{prefix}{n}") for n, b in graph.nodes.items()}
    out["edges"] = [[s, d] for s, d in graph.edges]
    inputs = {}
    for name, gi in graph.exposed_inputs.items():
        entry: dict[str, Any] = {"to": [f"{n}.{p}" for n, p in gi.targets]}
        if gi.default is not MISSING:
            try:
                json.dumps(gi.default)
                entry["default"] = gi.default
            except (TypeError, ValueError):
                problems.append(Problem("bad_config", f"default of graph input {name!r} is not JSON-serialisable", port=name))
        if gi.description:
            entry["description"] = gi.description
        if gi.required:
            entry["required"] = True
        inputs[name] = entry
    out["inputs"] = inputs
    out["outputs"] = graph.graph_outputs
    return out


def _node_dict(blk: Block, problems: list[Problem], path: str) -> dict[str, Any]:
    if isinstance(blk, Loop):
        loop: dict[str, Any] = {"over": blk.over, "item": blk.item, "carry": dict(blk.carry), "body": _graph_dict(blk.body, problems, f"{path}/")}
        if blk.over_type is not Any:
            from ..blocks.types import PORT_TYPES, type_name

            name = type_name(blk.over_type)
            if PORT_TYPES.get(name) is not blk.over_type:
                problems.append(Problem("bad_config", f"loop over_type {name} has no name in graph files (see PORT_TYPES)", path))
            loop["over_type"] = name
        loop["progress"] = blk.progress
        return {"loop": loop}
    if isinstance(blk, Switch):
        sw: dict[str, Any] = {
            "branches": {b: _graph_dict(g, problems, f"{path}/{b}/") for b, g in blk.branches.items()},
            "when": {b: v[0] if len(v) == 1 else list(v) for b, v in blk.when.items()},
        }
        if blk.default is not None:
            sw["default"] = blk.default
        if blk.predicate is not None:
            sw["predicate"] = blk.predicate
        return {"switch": sw}
    if isinstance(blk, GraphCore):
        return {"graph": _graph_dict(blk, problems, f"{path}/")}
    if not blk.name:
        problems.append(Problem("unknown_block", f"block {blk.label} is not registered; register it (or @block(name)) to save the graph", path))
        return {}
    if not isinstance(blk, UnknownBlock):
        from ..registry.blocks import block_origin, get_block

        try:
            registered = get_block(blk.name)
        except GraphError:
            registered = None
        if registered is None:
            problems.append(Problem("unknown_block", f"block {blk.label} is not registered; register it to save the graph", path))
        elif block_origin(registered) != block_origin(blk):
            problems.append(Problem("unknown_block", f"block {blk.label} is not the block registered as {blk.name!r}", path))
    node: dict[str, Any] = {"block": blk.name}
    if not isinstance(blk, UnknownBlock):
        node["version"] = blk.version
    if blk.config_overrides:
        node["config"] = dict(blk.config_overrides)
    return node
