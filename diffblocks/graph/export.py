"""Pictures of a graph: Mermaid, Graphviz DOT, and a readable text summary."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from diffblocks.blocks.base import Block
from diffblocks.graph.composites import Loop, Switch
from diffblocks.graph.core import GraphCore
from diffblocks.graph.parts import UnknownBlock

__all__ = ["to_mermaid", "to_dot", "to_text"]


def _kind(blk: Block) -> str:
    if isinstance(blk, Loop):
        return f"Loop over {blk.over} (item {blk.item}, carry {', '.join(blk.carry)})"
    if isinstance(blk, Switch):
        how = f"predicate {blk.predicate}" if blk.predicate else "by present inputs"
        return f"Switch {how}"
    if isinstance(blk, GraphCore):
        return f"Graph {blk.name}"
    if isinstance(blk, UnknownBlock):
        return f"UNKNOWN block {blk.name}"
    return f"{blk.label} v{blk.version}"


def _inner(blk: Block) -> list[tuple[str, GraphCore]]:
    """The graphs drawn inside a composite: (label, graph)."""
    if isinstance(blk, Loop):
        return [("", blk.body)]
    if isinstance(blk, Switch):
        return list(blk.branches.items())
    if isinstance(blk, GraphCore):
        return [("", blk)]
    return []


def _ident(path: str) -> str:
    """A diagram id for a node path. Injective: "_" doubles, "/" and "#" get their own codes
    ("#" marks ids that are not nodes: graph inputs, outputs, composite anchors)."""
    return "n_" + path.replace("_", "__").replace("/", "_s").replace("#", "_h")


def to_mermaid(graph: GraphCore) -> str:
    """A Mermaid flowchart; composites are drawn as subgraphs."""
    lines = ["flowchart LR"]
    for name in graph.exposed_inputs:
        lines.append(f'  {_ident("#in/" + name)}(["{name}"])')
    _body(graph, "", lines, "  ", _MERMAID)
    for name, (node, port) in graph.exposed_outputs.items():
        lines.append(f'  {_ident("#out/" + name)}(["{name}"])')
        lines.append(f'  {_ident(node)} -- "{port}" --> {_ident("#out/" + name)}')
    for name, gi in graph.exposed_inputs.items():
        for node, port in gi.targets:
            lines.append(f'  {_ident("#in/" + name)} -- "{port}" --> {_ident(node)}')
    return "\n".join(lines) + "\n"


def _m(text: str) -> str:
    """Text safe inside a quoted Mermaid label."""
    return text.replace('"', "#quot;").replace("\n", " ")


def _edge_label(src: tuple[str, str], dst: tuple[str, str], arrow: str) -> str:
    return src[1] if src[1] == dst[1] else f"{src[1]} {arrow} {dst[1]}"


@dataclass(frozen=True)
class _Syntax:
    """How one diagram language writes a composite's cluster, a branch, a leaf node and an edge."""

    close: str
    cluster: Callable[[str, str, Block], list[str]]  # (path, node, block) -> the lines opening it
    sub: Callable[[str, str], str]  # (path prefix, branch label) -> the line opening a branch
    leaf: Callable[[str, str, Block], str]
    edge: Callable[[GraphCore, str, tuple[str, str], tuple[str, str]], str]  # (graph, prefix, dst, src)


_MERMAID = _Syntax(
    close="end",
    cluster=lambda path, node, blk: [f'subgraph {_ident(path)} ["{node}: {_m(_kind(blk))}"]'],
    sub=lambda prefix, label: f'subgraph {_ident(prefix)} ["{label}"]',
    leaf=lambda path, node, blk: f'{_ident(path)}["{node}<br/><i>{_m(_kind(blk))}</i>"]',
    edge=lambda graph, prefix, dst, src: (
        f'{_ident(prefix + src[0])} -- "{_edge_label(src, dst, "→")}" --> {_ident(prefix + dst[0])}'
    ),
)

_DOT = _Syntax(
    close="}",
    cluster=lambda path, node, blk: [
        f"subgraph cluster_{_ident(path)} {{",
        f"  label={_q(node + ': ' + _kind(blk))};",
        f"  {_ident(path + '/#anchor')} [label=\"\", shape=point];",
    ],
    sub=lambda prefix, label: f"subgraph cluster_{_ident(prefix)} {{ label={_q(label)};",
    leaf=lambda path, node, blk: f"{_ident(path)} [label={_q(node + chr(10) + _kind(blk))}];",
    edge=lambda graph, prefix, dst, src: (
        f"{_anchor(graph, src[0], prefix)} -> {_anchor(graph, dst[0], prefix)} [label={_q(_edge_label(src, dst, '->'))}];"
    ),
)


def _body(graph: GraphCore, prefix: str, lines: list[str], pad: str, syntax: _Syntax) -> None:
    """Nodes (composites as nested clusters, one per branch or body) and edges, in ``syntax``."""
    for node, blk in graph.nodes.items():
        path = f"{prefix}{node}"
        inner = _inner(blk)
        if not inner:
            lines.append(pad + syntax.leaf(path, node, blk))
            continue
        lines.extend(pad + line for line in syntax.cluster(path, node, blk))
        for label, sub in inner:
            sub_prefix = f"{path}/{label}/" if label else f"{path}/"
            if label:
                lines.append(f"{pad}  {syntax.sub(sub_prefix, label)}")
                _body(sub, sub_prefix, lines, pad + "    ", syntax)
                lines.append(f"{pad}  {syntax.close}")
            else:
                _body(sub, sub_prefix, lines, pad + "  ", syntax)
        lines.append(pad + syntax.close)
    for dst, src in graph.sources.items():
        lines.append(pad + syntax.edge(graph, prefix, dst, src))


def _q(text: str) -> str:
    return json.dumps(text)


def to_dot(graph: GraphCore) -> str:
    """Graphviz DOT text; composites are clusters."""
    lines = [f"digraph {_q(graph.name)} {{", "  rankdir=LR;", "  node [shape=box, fontname=Helvetica];"]
    for name in graph.exposed_inputs:
        lines.append(f"  {_ident('#in/' + name)} [label={_q(name)}, shape=ellipse];")
    _body(graph, "", lines, "  ", _DOT)
    for name, gi in graph.exposed_inputs.items():
        for node, port in gi.targets:
            lines.append(f"  {_ident('#in/' + name)} -> {_anchor(graph, node, '')} [label={_q(port)}];")
    for name, (node, port) in graph.exposed_outputs.items():
        lines.append(f"  {_ident('#out/' + name)} [label={_q(name)}, shape=ellipse];")
        lines.append(f"  {_anchor(graph, node, '')} -> {_ident('#out/' + name)} [label={_q(port)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _anchor(graph: GraphCore, node: str, prefix: str) -> str:
    """DOT edges need a real node: composites get an invisible anchor point in their cluster."""
    path = f"{prefix}{node}"
    return _ident(path + "/#anchor") if _inner(graph.nodes[node]) else _ident(path)


def to_text(graph: GraphCore) -> str:
    """Inputs, nodes (ports, types, config, components), outputs, and needed components."""
    lines = [f"Graph {graph.name!r}: {len(graph.nodes)} nodes, {len(graph.sources)} edges"]
    if graph.description:
        lines.extend(f"  {line}" for line in graph.description.splitlines())
    _text_body(graph, lines, "")
    comps = graph.required_components()
    if comps:
        lines.append("components:")
        lines += [f"  {n}: {ref.expected_name}" for n, ref in comps.items()]
    return "\n".join(lines) + "\n"


def _feeds(graph: GraphCore) -> dict[tuple[str, str], str]:
    feeds = {d: f"{s[0]}.{s[1]}" for d, s in graph.sources.items()}
    for name, gi in graph.exposed_inputs.items():
        for target in gi.targets:
            feeds[target] = f"input {name}"
    return feeds


def _text_body(graph: GraphCore, lines: list[str], pad: str) -> None:
    ports = graph.inputs
    if ports:
        lines.append(f"{pad}inputs:")
        for name, port in ports.items():
            targets = ", ".join(f"{n}.{p}" for n, p in graph.exposed_inputs[name].targets)
            lines.append(f"{pad}  {port.describe()}  -> {targets}")
    feeds = _feeds(graph)
    lines.append(f"{pad}nodes:")
    for node, blk in graph.nodes.items():
        lines.append(f"{pad}  {node}: {_kind(blk)}")
        if blk.config_overrides:
            lines.append(f"{pad}    config: {json.dumps(blk.config_overrides)}")
        for pname, port in blk.inputs.items():
            src = feeds.get((node, pname), "default" if not port.required else "UNCONNECTED")
            lines.append(f"{pad}    in  {port.describe()}  <- {src}")
        for pname, port in blk.outputs.items():
            lines.append(f"{pad}    out {pname}: {port.type_name}")
        if not blk.is_composite and blk.components:
            lines.append(f"{pad}    components: " + ", ".join(f"{n} ({r.expected_name})" for n, r in blk.components.items()))
        for label, sub in _inner(blk):
            if label:
                when = ""
                if isinstance(blk, Switch) and label in blk.when:
                    when = f" (when {', '.join(blk.when[label])} given)"
                elif isinstance(blk, Switch) and label == blk.default:
                    when = " (default)"
                lines.append(f"{pad}    branch {label}{when}:")
                _text_body(sub, lines, pad + "      ")
            else:
                _text_body(sub, lines, pad + "    ")
    outs = graph.outputs
    if outs:
        lines.append(f"{pad}outputs:")
        for name, port in outs.items():
            node, p = graph.exposed_outputs[name]
            lines.append(f"{pad}  {name}: {port.type_name}  <- {node}.{p}")
