"""``Composite``: the base of blocks made of other blocks (Graph, Loop, Switch)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from diffblocks.blocks.base import Block
from diffblocks.blocks.errors import Problem
from diffblocks.blocks.ports import ComponentRef, Port

if TYPE_CHECKING:
    from diffblocks.graph.core import GraphCore

__all__ = ["Composite"]


def _derived(block: Block, what: str) -> None:
    raise AttributeError(f"{block.label}: a composite's {what} come from the blocks inside it and cannot be set")


class Composite(Block):
    """Base of the blocks made of other blocks: Graph, Loop and Switch.

    Their ports, components and ``memoise`` flag are views of the blocks inside, computed on
    read (``derive_inputs``, ``derive_outputs``, ``required_components``, ``derive_memoise``);
    they have no config of their own, version 1, and run through a compiled plan, never through
    ``implementation()``.
    """

    is_composite = True
    name: str

    def __init__(self, name: str, description: str = "") -> None:
        self.name = name
        self.description = description
        self.version = 1
        self.config = {}
        self.config_overrides = {}

    # -- what each composite computes
    def derive_inputs(self) -> dict[str, Port]:
        raise NotImplementedError

    def derive_outputs(self) -> dict[str, Port]:
        raise NotImplementedError

    def derive_memoise(self) -> bool:
        raise NotImplementedError

    def child_nodes(self) -> dict[str, Block]:
        """The blocks directly inside (a Loop's body nodes, a Switch's branch graphs)."""
        raise NotImplementedError

    def problems(self, components: Mapping[str, Any] | None = None) -> list[Problem]:
        """Every problem of this composite and what it contains (empty when valid)."""
        raise NotImplementedError

    def enter(self, node: str, rest: Sequence[str], path: str) -> tuple[GraphCore, int]:
        """Where an editing path (``"denoise/guide"``) goes at this composite, the node ``node``:
        the graph it walks into, and how many of the ``rest`` parts naming it were used (a
        Switch's branch name takes one; ``path`` is the whole path, for the error message)."""
        raise NotImplementedError

    # -- the Block attributes, as views (settable only in the sense that setting them says why not)
    @property
    def inputs(self) -> dict[str, Port]:
        return self.derive_inputs()

    @inputs.setter
    def inputs(self, value: dict[str, Port]) -> None:
        _derived(self, "inputs")

    @property
    def outputs(self) -> dict[str, Port]:
        return self.derive_outputs()

    @outputs.setter
    def outputs(self, value: dict[str, Port]) -> None:
        _derived(self, "outputs")

    @property
    def components(self) -> dict[str, ComponentRef]:
        return self.required_components()

    @components.setter
    def components(self, value: dict[str, ComponentRef]) -> None:
        _derived(self, "components")

    @property
    def memoise(self) -> bool:
        return self.derive_memoise()

    @memoise.setter
    def memoise(self, value: bool) -> None:
        _derived(self, "memoise flag")

    def implementation(self) -> Callable[..., Any]:  # pragma: no cover - composites are compiled
        raise TypeError(f"{self.label} runs through its compiled plan")
