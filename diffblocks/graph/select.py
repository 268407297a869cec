"""``graph.select(**present)``: the pruned graph that would run for the given inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from diffblocks.blocks.base import Block
from diffblocks.blocks.errors import GraphError, Problem
from diffblocks.blocks.ports import MISSING
from diffblocks.graph.composites import Loop, Switch
from diffblocks.graph.core import GraphCore

__all__ = ["select"]

G = TypeVar("G", bound=GraphCore)


class _Present:
    """Stands for a value that will exist at run time (fed by another node's output)."""

    def __repr__(self) -> str:
        return "<present>"


PRESENT: Any = _Present()


def select(graph: G, present: Mapping[str, Any]) -> G:
    """Replace every Switch by the branch it would pick when the graph inputs in ``present`` are
    given (a value ``None`` counts as absent), recursing into nested graphs and loop bodies.
    Graph inputs that nothing consumes any more are dropped. A predicate sees the given values,
    and a placeholder for values that other nodes will produce.

    The graph inputs whose presence picked a branch become required in the result: the
    img2img workflow cannot run without its ``image``, and a run without it is refused at the
    graph boundary (naming the input and the graph) instead of failing deep inside a node."""
    values = {}
    for name, gi in graph.exposed_inputs.items():
        if present.get(name) is not None:
            values[name] = present[name]
        elif gi.default is not MISSING and gi.default is not None:
            values[name] = gi.default
    return _select(graph, values)


def _feed_values(graph: GraphCore, node: str, blk: Block, values: Mapping[str, Any]) -> dict[str, Any]:
    """The value (or PRESENT) each input of ``node`` will see; absent inputs are left out."""
    result: dict[str, Any] = {}
    for port, spec in blk.inputs.items():
        if (node, port) in graph.sources:
            result[port] = PRESENT
            continue
        fed_by = next((n for n, gi in graph.exposed_inputs.items() if (node, port) in gi.targets), None)
        if fed_by is not None:
            if fed_by in values:
                result[port] = values[fed_by]
        elif spec.default is not MISSING and spec.default is not None:
            result[port] = spec.default
    return result


def _select(graph: G, values: Mapping[str, Any]) -> G:
    out = graph.copy()
    for node, blk in graph.nodes.items():
        if not blk.is_composite:
            continue
        feeds = _feed_values(graph, node, blk, values)
        if isinstance(blk, Switch):
            try:
                branch = blk.pick(feeds)
            except Exception as exc:  # a predicate may not cope with values not known yet
                raise GraphError([Problem("bad_input", f"cannot pick a branch: {exc}", node)], title="select failed") from None
            chosen = _select(blk.branches[branch], feeds)
            for port in blk.when.get(branch, ()):
                for gi in out._inputs.values():
                    if (node, port) in gi.targets:
                        gi.required = True
            out.nodes[node] = chosen
            out.prune_dangling(node)
        elif isinstance(blk, Loop):
            body = _select(blk.body, {**feeds, blk.item: PRESENT})
            out.nodes[node] = Loop(body, blk.over, blk.item, blk.carry, name=blk.name, over_type=blk.over_type, progress=blk.progress, description=blk.description)
        elif isinstance(blk, GraphCore):
            out.nodes[node] = _select(blk, feeds)
    out.drop_unused_inputs()
    return out
