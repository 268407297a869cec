"""Composite blocks: ``Loop`` (a body graph run once per element) and ``Switch`` (one branch
picked by which inputs are present, or by a registered predicate)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from diffblocks.blocks.base import Block
from diffblocks.blocks.errors import GraphError, Problem
from diffblocks.blocks.ports import MISSING, ComponentRef, Port
from diffblocks.blocks.types import is_compatible, type_name
from diffblocks.graph.composite import Composite
from diffblocks.graph.core import GraphCore, graph_class

__all__ = ["Loop", "Switch"]


def _as_graph(block: Block, name: str) -> GraphCore:
    return block if isinstance(block, GraphCore) else graph_class().wrap(block, name)


def _run_alone(block: Block, components: Mapping[str, Any] | None, inputs: Mapping[str, Any]) -> Any:
    return graph_class().wrap(block).compile(cache=False).call(components=components, inputs=inputs, progress=False)


class Loop(Composite):
    """Run ``body`` once per element of the input ``over``.

    ::

        denoise = Loop(body, over="timesteps", item="t", carry={"latents": "latents"})

    * ``item``: the body input that receives the current element;
    * ``carry``: ``{body_input: body_output}`` — after each step the output feeds the input of the
      next step; the loop's outputs are the final carried values, named by the body input;
    * every other body input is loop-invariant (set once per loop run);
    * the loop's inputs are ``over``, the carried initial values, and the invariant inputs.

    Callbacks see each step (index, element, carried values) and may replace carried values or
    stop the loop; the executor shows a progress bar of steps when ``progress`` is on.
    """

    def __init__(
        self,
        body: Block,
        over: str,
        item: str,
        carry: Mapping[str, str],
        *,
        name: str = "loop",
        over_type: Any = Any,
        progress: bool = True,
        description: str = "",
    ) -> None:
        super().__init__(name, description)
        self.body = _as_graph(body, f"{name}_body")
        self.over = over
        self.item = item
        self.carry = dict(carry)
        self.over_type = over_type
        self.progress = progress

    def derive_inputs(self) -> dict[str, Port]:
        ports = {self.over: Port(self.over, self.over_type, MISSING, f"iterated over; each element feeds {self.item}")}
        for name, port in self.body.inputs.items():
            if name != self.item and name != self.over:
                ports[name] = port
        return ports

    def derive_outputs(self) -> dict[str, Port]:
        body_out = self.body.outputs
        ports = {}
        for name, out in self.carry.items():
            src = body_out.get(out)
            ports[name] = Port(name, src.type if src else Any, MISSING, f"{name} after the last step")
        return ports

    def derive_memoise(self) -> bool:
        return self.body.memoise

    def required_components(self) -> dict[str, ComponentRef]:
        return self.body.required_components()

    def child_nodes(self) -> dict[str, Block]:
        return self.body.nodes

    def enter(self, node: str, rest: Sequence[str], path: str) -> tuple[GraphCore, int]:
        return self.body, 0

    @property
    def identity(self) -> tuple[Any, ...]:
        return ("loop", self.body.identity, self.over, self.item, tuple(self.carry.items()))

    def problems(self, components: Mapping[str, Any] | None = None) -> list[Problem]:
        found = list(self.body.problems(components))
        body_in, body_out = self.body.inputs, self.body.outputs
        if self.item not in body_in:
            found.append(Problem("unknown_port", f"loop item {self.item!r} is not an input of the body graph (inputs: {', '.join(body_in) or 'none'})", port=self.item))
        if self.over in body_in:
            found.append(Problem("bad_structure", f"loop input {self.over!r} clashes with a body input of the same name", port=self.over))
        if not self.carry:
            found.append(Problem("bad_structure", "a loop needs at least one carried port (carry={'latents': 'latents'})"))
        for cin, cout in self.carry.items():
            if cin not in body_in:
                found.append(Problem("unknown_port", f"carried input {cin!r} is not an input of the body graph", port=cin))
            if cout not in body_out:
                found.append(Problem("unknown_port", f"carried output {cout!r} is not an output of the body graph", port=cout))
            if cin in body_in and cout in body_out and not is_compatible(body_out[cout].type, body_in[cin].type):
                found.append(
                    Problem(
                        "type_mismatch",
                        f"carried {cout} gives {type_name(body_out[cout].type)} but {cin} expects {type_name(body_in[cin].type)}",
                        port=cin,
                    )
                )
        return found

    def __call__(self, components: Mapping[str, Any] | None = None, **inputs: Any) -> Any:
        """Run alone, like a function (as a one-node graph, without memoisation)."""
        return _run_alone(self, components, inputs)

    def __repr__(self) -> str:
        return f"<Loop {self.name!r} over {self.over} item {self.item} carry {self.carry}>"


class Switch(Composite):
    """Pick one branch graph at run time.

    ::

        Switch({"inpaint": inpaint_g, "img2img": img2img_g, "text2img": t2i_g},
               when={"inpaint": "mask_image", "img2img": "image"}, default="text2img")

    ``when`` is checked in order: the first branch whose input(s) are all present (given and not
    ``None``) wins, else ``default``. A branch sees only the inputs that are present; the others
    keep the branch's own defaults. Or give ``predicate="name"`` of a function registered with
    ``register_predicate`` that maps the present inputs to a branch name. Every branch is
    validated statically; all branches must produce the same outputs.
    """

    def __init__(
        self,
        branches: Mapping[str, Block],
        when: Mapping[str, str | Sequence[str]] | None = None,
        default: str | None = None,
        predicate: str | None = None,
        *,
        name: str = "switch",
        description: str = "",
    ) -> None:
        super().__init__(name, description)
        self.branches: dict[str, GraphCore] = {b: _as_graph(g, b) for b, g in branches.items()}
        self.when: dict[str, list[str]] = {
            b: [v] if isinstance(v, str) else list(v) for b, v in (when or {}).items()
        }
        self.default = default
        self.predicate = predicate

    @property
    def selector_inputs(self) -> list[str]:
        return [name for names in self.when.values() for name in names]

    def derive_inputs(self) -> dict[str, Port]:
        ports: dict[str, Port] = {}
        needed: dict[str, int] = {}
        for graph in self.branches.values():
            for name, port in graph.inputs.items():
                ports.setdefault(name, port)
                needed[name] = needed.get(name, 0) + (1 if port.required else 0)
        selectors = dict.fromkeys(self.selector_inputs)  # ordered: port order must not depend on hashing
        result = {}
        for name, port in ports.items():
            if name in selectors:  # presence means "given": a default would always select
                result[name] = Port(name, Optional[port.type], None, port.description or "its presence selects a branch")
            elif needed[name] == len(self.branches) or not port.required:
                result[name] = port
            else:
                result[name] = Port(name, Optional[port.type], None, port.description)
        for name in selectors:
            result.setdefault(name, Port(name, Any, None, "its presence selects a branch"))
        return result

    def derive_outputs(self) -> dict[str, Port]:
        for graph in self.branches.values():
            return graph.outputs
        return {}

    def derive_memoise(self) -> bool:
        return all(g.memoise for g in self.branches.values())

    def required_components(self) -> dict[str, ComponentRef]:
        found: dict[str, ComponentRef] = {}
        for graph in self.branches.values():
            for name, ref in graph.required_components().items():
                found.setdefault(name, ref)
        return found

    def child_nodes(self) -> dict[str, Block]:
        return dict(self.branches)

    def enter(self, node: str, rest: Sequence[str], path: str) -> tuple[GraphCore, int]:
        if not rest or rest[0] not in self.branches:
            raise GraphError([Problem("unknown_port", f"name a branch of {node!r} ({', '.join(self.branches)}) in {path!r}", node)])
        return self.branches[rest[0]], 1

    @property
    def identity(self) -> tuple[Any, ...]:
        branches = tuple((n, g.identity) for n, g in self.branches.items())
        return ("switch", branches, tuple((b, tuple(v)) for b, v in self.when.items()), self.default, self.predicate)

    def pick(self, present: Mapping[str, Any]) -> str:
        """The branch that runs when the inputs in ``present`` (name -> value) are given."""
        if self.predicate is not None:
            from diffblocks.registry.blocks import get_predicate

            branch = get_predicate(self.predicate)(dict(present))
            if branch not in self.branches:
                raise ValueError(f"predicate {self.predicate!r} chose {branch!r}, not a branch of {sorted(self.branches)}")
            return branch
        for branch, names in self.when.items():
            if all(present.get(n) is not None for n in names):
                return branch
        if self.default is None:
            wanted = "; ".join(f"{b} needs {', '.join(n)}" for b, n in self.when.items())
            raise ValueError(f"no branch of switch {self.name!r} matches the given inputs ({wanted}) and there is no default")
        return self.default

    def problems(self, components: Mapping[str, Any] | None = None) -> list[Problem]:
        found: list[Problem] = []
        if not self.branches:
            return [Problem("bad_structure", "a Switch needs at least one branch")]
        for branch, graph in self.branches.items():
            found.extend(p.nested(branch) for p in graph.problems(components))
        if self.predicate is not None:
            if self.when:
                found.append(Problem("bad_structure", "give either when= or predicate=, not both"))
            from diffblocks.registry.blocks import UnknownBlockError, get_predicate

            try:
                get_predicate(self.predicate)
            except UnknownBlockError as exc:
                found.extend(exc.problems)
        for branch in [*self.when, *([self.default] if self.default else [])]:
            if branch not in self.branches:
                found.append(Problem("unknown_port", f"branch {branch!r} is not one of {sorted(self.branches)}", port=branch))
        first_name, first = next(iter(self.branches.items()))
        ref_out = first.outputs
        for branch, graph in self.branches.items():
            outs = graph.outputs
            if set(outs) != set(ref_out):
                found.append(
                    Problem(
                        "bad_structure",
                        f"branch {branch!r} outputs {sorted(outs)} but branch {first_name!r} outputs {sorted(ref_out)}; all branches must give the same outputs",
                        branch,
                    )
                )
            for name, port in outs.items():
                if name in ref_out and not is_compatible(port.type, ref_out[name].type):
                    found.append(Problem("type_mismatch", f"output {name} is {port.type_name} here but {ref_out[name].type_name} in {first_name!r}", branch, name))
        seen: dict[str, tuple[str, Port]] = {}
        for branch, graph in self.branches.items():
            for name, port in graph.inputs.items():
                if name in seen:
                    other, oport = seen[name]
                    if not (is_compatible(port.type, oport.type) or is_compatible(oport.type, port.type)):
                        found.append(Problem("type_mismatch", f"input {name} is {port.type_name} here but {oport.type_name} in {other!r}", branch, name))
                else:
                    seen[name] = (branch, port)
        return found

    def __call__(self, components: Mapping[str, Any] | None = None, **inputs: Any) -> Any:
        """Run alone, like a function (as a one-node graph, without memoisation)."""
        return _run_alone(self, components, inputs)

    def __repr__(self) -> str:
        return f"<Switch {self.name!r} branches {list(self.branches)}>"
