"""Pictures of a graph: Mermaid, Graphviz DOT, and a readable text summary."""

from __future__ import annotations

import json

from diffblocks.blocks.base import Block
from diffblocks.graph.composites import Loop, Switch
from diffblocks.graph.graph import Graph, UnknownBlock

__all__ = ["to_mermaid", "to_dot", "to_text"]


def _kind(blk: Block) -> str:
    if isinstance(blk, Loop):
        return f"Loop over {blk.over} (item {blk.item}, carry {', '.join(blk.carry)})"
    if isinstance(blk, Switch):
        how = f"predicate {blk.predicate}" if blk.predicate else "by present inputs"
        return f"Switch {how}"
    if isinstance(blk, Graph):
        return f"Graph {blk.name}"
    if isinstance(blk, UnknownBlock):
        return f"UNKNOWN block {blk.name}"
    return f"{blk.label} v{blk.version}"


def _inner(blk: Block) -> list[tuple[str, Graph]]:
    """The graphs drawn inside a composite: (label, graph)."""
    if isinstance(blk, Loop):
        return [("", blk.body)]
    if isinstance(blk, Switch):
        return list(blk.branches.items())
    if isinstance(blk, Graph):
        return [("", blk)]
    return []


def _ident(path: str) -> str:
    """A diagram id for a node path. Injective: "_" doubles, "/" and "#" get their own codes
    ("#" marks ids that are not nodes: graph inputs, outputs, composite anchors)."""
    return "n_" + path.replace("_", "__").replace("/", "_s").replace("#", "_h")


def to_mermaid(graph: Graph) -> str:
    """A Mermaid flowchart; composites are drawn as subgraphs."""
    lines = ["flowchart LR"]
    for name in graph.exposed_inputs:
        lines.append(f'  {_ident("#in/" + name)}(["{name}"])')
    _mermaid_body(graph, "", lines, "  ")
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


def _mermaid_body(graph: Graph, prefix: str, lines: list[str], pad: str) -> None:
    for node, blk in graph.nodes.items():
        path = f"{prefix}{node}"
        inner = _inner(blk)
        if inner:
            lines.append(f'{pad}subgraph {_ident(path)} ["{node}: {_m(_kind(blk))}"]')
            for label, sub in inner:
                sub_prefix = f"{path}/{label}/" if label else f"{path}/"
                if label:
                    lines.append(f'{pad}  subgraph {_ident(sub_prefix)} ["{label}"]')
                    _mermaid_body(sub, sub_prefix, lines, pad + "    ")
                    lines.append(f"{pad}  end")
                else:
                    _mermaid_body(sub, sub_prefix, lines, pad + "  ")
            lines.append(f"{pad}end")
        else:
            lines.append(f'{pad}{_ident(path)}["{node}<br/><i>{_m(_kind(blk))}</i>"]')
    for (dn, dp), (sn, sp) in graph.sources.items():
        label = sp if sp == dp else f"{sp} → {dp}"
        lines.append(f'{pad}{_ident(prefix + sn)} -- "{label}" --> {_ident(prefix + dn)}')


def _q(text: str) -> str:
    return json.dumps(text)


def to_dot(graph: Graph) -> str:
    """Graphviz DOT text; composites are clusters."""
    lines = [f"digraph {_q(graph.name)} {{", "  rankdir=LR;", "  node [shape=box, fontname=Helvetica];"]
    for name in graph.exposed_inputs:
        lines.append(f"  {_ident('#in/' + name)} [label={_q(name)}, shape=ellipse];")
    _dot_body(graph, "", lines, "  ")
    for name, gi in graph.exposed_inputs.items():
        for node, port in gi.targets:
            lines.append(f"  {_ident('#in/' + name)} -> {_anchor(graph, node, '')} [label={_q(port)}];")
    for name, (node, port) in graph.exposed_outputs.items():
        lines.append(f"  {_ident('#out/' + name)} [label={_q(name)}, shape=ellipse];")
        lines.append(f"  {_anchor(graph, node, '')} -> {_ident('#out/' + name)} [label={_q(port)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _anchor(graph: Graph, node: str, prefix: str) -> str:
    """DOT edges need a real node: composites get an invisible anchor point in their cluster."""
    path = f"{prefix}{node}"
    return _ident(path + "/#anchor") if _inner(graph.nodes[node]) else _ident(path)


def _dot_body(graph: Graph, prefix: str, lines: list[str], pad: str) -> None:
    for node, blk in graph.nodes.items():
        path = f"{prefix}{node}"
        inner = _inner(blk)
        if inner:
            lines.append(f"{pad}subgraph cluster_{_ident(path)} {{")
            lines.append(f"{pad}  label={_q(node + ': ' + _kind(blk))};")
            lines.append(f"{pad}  {_ident(path + '/#anchor')} [label=\"\", shape=point];")
            for label, sub in inner:
                sub_prefix = f"{path}/{label}/" if label else f"{path}/"
                if label:
                    lines.append(f"{pad}  subgraph cluster_{_ident(sub_prefix)} {{ label={_q(label)};")
                    _dot_body(sub, sub_prefix, lines, pad + "    ")
                    lines.append(f"{pad}  }}")
                else:
                    _dot_body(sub, sub_prefix, lines, pad + "  ")
            lines.append(f"{pad}}}")
        else:
            lines.append(f"{pad}{_ident(path)} [label={_q(node + chr(10) + _kind(blk))}];")
    for (dn, dp), (sn, sp) in graph.sources.items():
        label = sp if sp == dp else f"{sp} -> {dp}"
        lines.append(f"{pad}{_anchor(graph, sn, prefix)} -> {_anchor(graph, dn, prefix)} [label={_q(label)}];")


def to_text(graph: Graph) -> str:
    """Inputs, nodes (ports, types, config, components), outputs, and needed components."""
    lines = [f"Graph {graph.name!r}: {len(graph.nodes)} nodes, {len(graph.sources)} edges"]
    if graph.description:
        lines.append(f"  {graph.description}")
    _text_body(graph, lines, "")
    comps = graph.required_components()
    if comps:
        lines.append("components:")
        lines += [f"  {n}: {ref.expected_name}" for n, ref in comps.items()]
    return "\n".join(lines) + "\n"


def _feeds(graph: Graph) -> dict[tuple[str, str], str]:
    feeds = {d: f"{s[0]}.{s[1]}" for d, s in graph.sources.items()}
    for name, gi in graph.exposed_inputs.items():
        for target in gi.targets:
            feeds[target] = f"input {name}"
    return feeds


def _text_body(graph: Graph, lines: list[str], pad: str) -> None:
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
