"""Port declarations: ``Port`` (what the graph sees), ``Input``/``Output``/``Outputs`` (how a
block author spells defaults, descriptions and multiple outputs)."""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import Any

from .types import is_optional, type_name

__all__ = ["MISSING", "Port", "Input", "Output", "Outputs", "ComponentRef", "parse_docstring"]


class _Missing:
    """Sentinel for "no default": the port is required."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Port:
    """One typed input or output of a block.

    ``default`` is ``MISSING`` for a required input. An input typed ``Optional[X]`` without a
    default gets ``None`` as its default (it is optional by construction).
    """

    name: str
    type: Any = Any
    default: Any = MISSING
    description: str = ""

    @property
    def required(self) -> bool:
        return self.default is MISSING

    @property
    def type_name(self) -> str:
        return type_name(self.type)

    def describe(self) -> str:
        text = f"{self.name}: {self.type_name}"
        if not self.required:
            text += f" = {self.default!r}"
        return text


@dataclass(frozen=True)
class Input:
    """Default value plus description for a function-block parameter::

        def scale(latents: Latents, factor: float = Input(1.0, "multiplier")) -> Latents: ...
    """

    default: Any = MISSING
    description: str = ""


@dataclass(frozen=True)
class Output:
    """A typed output with a description, for ``Outputs(latents=Output(Latents, "denoised"))``."""

    type: Any = Any
    description: str = ""


class Outputs:
    """Several named outputs, used as a function block's return annotation::

        def encode(...) -> Outputs(prompt_embeds=PromptEmbeds, pooled_prompt_embeds=PooledEmbeds):
            return {"prompt_embeds": e, "pooled_prompt_embeds": p}   # or a tuple in this order
    """

    def __init__(self, **ports: Any) -> None:
        if not ports:
            raise ValueError("Outputs() needs at least one named output")
        self.ports: dict[str, Output] = {
            name: spec if isinstance(spec, Output) else Output(spec) for name, spec in ports.items()
        }

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={type_name(o.type)}" for n, o in self.ports.items())
        return f"Outputs({inner})"


@dataclass(frozen=True)
class ComponentRef:
    """A component a block needs: its name in the provider and the expected type.

    ``expected`` is a class or a ``"library.ClassName"`` string, so block modules need not import
    heavy model classes.
    """

    name: str
    expected: Any = Any
    description: str = ""

    @property
    def expected_name(self) -> str:
        return component_type_name(self.expected)


def component_type_name(expected: Any) -> str:
    """``"transformers.CLIPTextModel"`` for both the class and the string spelling."""
    if isinstance(expected, str):
        return expected
    if expected is Any:
        return "Any"
    if isinstance(expected, type):
        return f"{expected.__module__.split('.')[0]}.{expected.__qualname__}"
    return str(expected)


_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Inputs|Returns|Outputs|Config):\s*$")
_ITEM = re.compile(r"^\s+(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str], dict[str, str]]:
    """Split a Google-style docstring into (summary, argument descriptions, return descriptions).

    Only ``Name: text`` items under ``Args:``/``Returns:`` headings are read; continuation lines
    are joined. Anything else stays in the summary.
    """
    if not doc:
        return "", {}, {}
    import inspect

    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    args: dict[str, str] = {}
    returns: dict[str, str] = {}
    target: dict[str, str] | None = None
    last: str | None = None
    for line in lines:
        heading = _SECTION.match(line)
        if heading:
            target = returns if heading.group(1) in ("Returns", "Outputs") else args
            last = None
            continue
        if target is None:
            summary.append(line)
            continue
        item = _ITEM.match(line)
        if item and (line.startswith("    ") or line.startswith("\t")) and not line.startswith("        "):
            last = item.group(1).lstrip("*")
            target[last] = item.group(2).strip()
        elif line.strip() and last is not None:
            target[last] = (target[last] + " " + line.strip()).strip()
        elif not line.strip():
            last = None
    return "\n".join(summary).strip(), args, returns


def port_from_annotation(name: str, annotation: Any, default: Any, description: str = "") -> Port:
    """Build a Port from a parameter/field annotation, unpacking ``Annotated[T, "description"]``
    and ``Input(default, description)``."""
    tp = annotation
    if typing.get_origin(tp) is typing.Annotated:
        base, *meta = typing.get_args(tp)
        tp = base
        for item in meta:
            if isinstance(item, str) and not description:
                description = item
            elif isinstance(item, Input):
                default = item.default if default is MISSING else default
                description = description or item.description
    if isinstance(default, Input):
        description = default.description or description
        default = default.default
    if default is MISSING and tp is not Any and is_optional(tp):
        default = None
    return Port(name=name, type=tp, default=default, description=description)


_reserved = frozenset({"components", "self"})
RESERVED_PORT_NAMES = _reserved
PORT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
