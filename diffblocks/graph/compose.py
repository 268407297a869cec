"""Auto-wiring by port name: ``Graph.sequential([...])`` produces plain explicit edges."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from diffblocks.blocks.base import Block
from diffblocks.graph.core import graph_class

if TYPE_CHECKING:
    from diffblocks.graph.graph import Graph

__all__ = ["sequential"]


def _steps(steps: Sequence[Any]) -> list[tuple[str, Block | str, Mapping[str, Any] | None]]:
    out = []
    used: set[str] = set()
    for item in steps:
        if isinstance(item, tuple):
            node, blk, *rest = item
            config = rest[0] if rest else None
        else:
            blk, config = item, None
            base = blk if isinstance(blk, str) else blk.label
            node, n = base, 2
            while node in used:
                node, n = f"{base}_{n}", n + 1
        used.add(node)
        out.append((node, blk, config))
    return out


def sequential(
    steps: Sequence[Any],
    name: str = "graph",
    rename: Mapping[str, str] | None = None,
    outputs: Sequence[str] | Mapping[str, str] | None = None,
    graph_cls: type[Graph] | None = None,
) -> Graph:
    """Build a graph from blocks in order, wiring each input to the latest earlier output of the
    same name.

    * ``steps``: blocks, registered names, or ``(node, block[, config])`` tuples;
    * ``rename``: ``{"node.port": "wire"}`` or ``{"port": "wire"}`` — the name a port is wired
      by (for inputs and outputs alike), e.g. ``{"decode.latents": "denoised"}``;
    * every input left unwired becomes a graph input named by its wire (shared by all nodes
      that want the same wire);
    * ``outputs``: wire names to expose (or ``{graph_output: wire}``); by default every output
      no later node consumed.
    The result holds only explicit edges, so what is saved is unambiguous.
    """
    rename = dict(rename or {})
    graph = (graph_cls or graph_class())(name)
    latest: dict[str, tuple[str, str]] = {}
    consumed: set[tuple[str, str]] = set()

    def wire(node: str, port: str) -> str:
        return rename.get(f"{node}.{port}", rename.get(port, port))

    for node, blk, config in _steps(steps):
        graph.add(node, blk, config=config)
        resolved = graph.nodes[node]
        for port in resolved.inputs:
            w = wire(node, port)
            src = latest.get(w)
            if src is not None:
                graph.connect(f"{src[0]}.{src[1]}", f"{node}.{port}")
                consumed.add(src)
            else:
                graph.expose_input(w, f"{node}.{port}")
        for port in resolved.outputs:
            latest[wire(node, port)] = (node, port)
    if outputs is None:
        chosen = {w: src for w, src in latest.items() if src not in consumed}
    else:
        pairs = outputs.items() if isinstance(outputs, Mapping) else ((w, w) for w in outputs)
        chosen = {}
        for gname, w in pairs:
            if w not in latest:
                raise KeyError(f"no step produces {w!r}; produced: {sorted(latest)}")
            chosen[gname] = latest[w]
    for gname, (node, port) in chosen.items():
        graph.expose_output(gname, f"{node}.{port}")
    return graph
