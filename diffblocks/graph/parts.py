"""The pieces a graph is made of, below everything else in ``diffblocks.graph``: ``"node.port"``
references, graph inputs, and the placeholder for a block whose name is not registered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from diffblocks.blocks.base import Block
from diffblocks.blocks.errors import GraphError, Problem
from diffblocks.blocks.ports import MISSING

__all__ = ["GraphInput", "UnknownBlock", "split_ref"]


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
