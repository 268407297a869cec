"""Calling a block directly, like a function: ``scale_latents(latents=x)``.

A leaf block runs here, without the graph executor (so the machinery needs no graph): inputs
are checked as at a graph's boundary (``check_inputs``, which the executor uses too), components
come from the ``components`` mapping, a ``RunContext`` is made for the one call, and the call
runs under ``torch.no_grad()``. Composite blocks (graphs, loops, switches) run through their
compiled plans instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from .context import RunContext
from .errors import GraphError, InputError, Problem
from .ports import Port
from .types import validate_value

if TYPE_CHECKING:
    from .base import Block

__all__ = ["Result", "check_inputs", "call_block"]


class Result(dict):
    """Outputs of a block or graph with several outputs: a dict that also allows ``r.latents``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no output {name!r}; outputs are {sorted(self)}") from None


def check_inputs(ports: Mapping[str, Port], inputs: Mapping[str, Any], title: str) -> dict[str, Any]:
    """Validate user values against ``ports`` (pydantic); ``InputError`` titled ``title`` lists
    every unknown, invalid or missing input. An optional input given as ``None`` keeps its default."""
    problems = []
    checked = {}
    for name, value in inputs.items():
        port = ports.get(name)
        if port is None:
            close = difflib.get_close_matches(name, list(ports), n=2)
            hint = f"; did you mean {' or '.join(close)}?" if close else f"; inputs are {', '.join(ports) or 'none'}"
            problems.append(Problem("bad_input", f"unknown input {name!r}{hint}", port=name))
            continue
        if value is None and not port.required:
            if port.default is None:
                checked[name] = None
            continue  # None means "not given": the input keeps its default
        try:
            checked[name] = validate_value(port.type, value)
        except ValueError as exc:
            problems.append(Problem("bad_input", f"input {name} {exc}", port=name))
    for name, port in ports.items():
        if port.required and name not in inputs:
            kind = "" if port.type_name == "Any" else f" ({port.type_name})"
            problems.append(Problem("bad_input", f"required input {name}{kind} is missing", port=name))
    if problems:
        raise InputError(problems, title=title)
    return checked


class _OneCall:
    """The run a ``RunContext`` belongs to when a block is called on its own: no loop, no generator."""

    __slots__ = ("shared", "loop_stack", "generator")

    def __init__(self) -> None:
        self.shared: dict[str, Any] = {}
        self.loop_stack: list[list[int]] = []
        self.generator = None


def call_block(block: Block, components: Mapping[str, Any] | None, inputs: Mapping[str, Any]) -> Any:
    """Run leaf ``block`` once: its single output's value, or a ``Result`` of several."""
    label = block.label
    kwargs = {name: port.default for name, port in block.inputs.items() if not port.required}
    kwargs.update(check_inputs(block.inputs, inputs, f"bad inputs for block {label!r}"))
    for name in block.components:
        if components is None or name not in components:
            raise GraphError([Problem("missing_component", f"block {label} needs component {name!r}; pass components={{...}}",
                                      port=name)], title=f"cannot call block {label!r}")
        kwargs[name] = components[name]
    if block.context_param is not None:
        kwargs[block.context_param] = RunContext(label, _OneCall())
    with torch.no_grad():
        try:
            result = block.implementation()(**kwargs)
        except Exception as exc:
            exc.add_note(f"(in diffblocks block {label})")
            raise
    names = list(block.outputs)
    if len(names) == 1:
        return result
    if isinstance(result, Mapping):
        missing = [n for n in names if n not in result]
        if missing:
            raise TypeError(f"block {label} returned no {missing[0]!r} (got {sorted(result)})")
        return Result({n: result[n] for n in names})
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        raise TypeError(f"block {label} must return a dict or a {len(names)}-tuple ({', '.join(names)}), "
                        f"got {type(result).__name__}")
    return Result(zip(names, result))
