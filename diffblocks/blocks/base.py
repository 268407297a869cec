"""``Block``: the unit of a diffusion graph — typed inputs and outputs, components, static config.

Class form (the function form in ``function.py`` builds the same thing from a signature)::

    @register_block
    class ScaleLatents(Block):
        '''Multiply latents by a factor.'''
        name = "scale_latents"
        version = 1

        class Inputs:
            latents: Latents
            factor: Annotated[float, "multiplier"] = 1.0

        class Outputs:
            latents: Latents

        def forward(self, latents, factor):
            return latents * factor

``forward`` receives inputs and components as keyword arguments (plus ``ctx`` if it declares a
parameter annotated ``RunContext``) and returns the single output, or a dict / tuple for several.
Config is read from ``self.config``.
"""

from __future__ import annotations

import copy
import inspect
import json
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from .call import Result, call_block
from .context import RunContext
from .errors import GraphError, Problem
from .ports import (
    MISSING,
    PORT_NAME,
    RESERVED_PORT_NAMES,
    ComponentRef,
    Port,
    parse_docstring,
    port_from_annotation,
)

__all__ = ["Block", "Result", "config_fields_from", "check_port_names"]


def _fields_of(holder: Any) -> dict[str, Port]:
    """Ports from an ``Inputs``/``Outputs``/``Config`` holder: a plain annotated class or a pydantic model."""
    if holder is None:
        return {}
    fields = getattr(holder, "model_fields", None)
    if fields is not None and isinstance(holder, type):
        ports = {}
        for name, info in fields.items():
            default = MISSING if info.is_required() else info.default
            ports[name] = port_from_annotation(name, info.annotation, default, info.description or "")
        return ports
    hints = typing.get_type_hints(holder, include_extras=True)
    return {
        name: port_from_annotation(name, tp, holder.__dict__.get(name, MISSING))
        for name, tp in hints.items()
        if not name.startswith("_")
    }


def check_port_names(owner: str, kind: str, names: typing.Iterable[str]) -> None:
    for name in names:
        if not PORT_NAME.match(name) or name in RESERVED_PORT_NAMES:
            raise TypeError(f"{owner}: {kind} name {name!r} is not allowed (identifier, not 'components'/'self')")


def config_fields_from(owner: str, config: Any) -> dict[str, Port]:
    """Config fields from a ``{name: default}`` dict or an annotated ``Config`` class."""
    if config is None:
        return {}
    if isinstance(config, Mapping):
        fields = {}
        for name, default in config.items():
            if isinstance(default, Port):
                fields[name] = Port(name, default.type, default.default, default.description)
            else:
                tp = Any if default is None else type(default)
                fields[name] = Port(name, tp, default)
    else:
        fields = _fields_of(config)
    for port in fields.values():
        if port.required:
            raise TypeError(f"{owner}: config field {port.name!r} needs a default value")
        try:
            json.dumps(port.default)
        except (TypeError, ValueError):
            raise TypeError(f"{owner}: default of config field {port.name!r} is not JSON-serialisable") from None
    return fields


def _component_refs(owner: str, components: Any) -> dict[str, ComponentRef]:
    if not components:
        return {}
    refs = {}
    for name, expected in dict(components).items():
        if isinstance(expected, ComponentRef):
            refs[name] = ComponentRef(name, expected.expected, expected.description)
        else:
            refs[name] = ComponentRef(name, expected)
    check_port_names(owner, "component", refs)
    return refs


class Block:
    """Base of every block: leaf blocks (class or function form) and composites (Graph, Loop, Switch).

    Attributes every block exposes: ``name`` (registered name or ``None``), ``version``,
    ``description``, ``inputs`` / ``outputs`` (``{name: Port}``), ``components``
    (``{name: ComponentRef}``), ``config_fields`` (``{name: Port}``), ``config`` (effective values),
    ``memoise`` (False for blocks with side effects: random draws from a passed generator,
    mutating a component).

    A block instance is immutable once built; ``with_config`` returns a configured copy.
    """

    # Class attributes for class-form blocks; FunctionBlock, UnknownBlock and composites set them
    # per instance (composites compute their ports and memoise flag: see graph.Composite).
    name: str | None = None
    version: int = 1
    memoise: bool = True
    description: str = ""
    inputs: dict[str, Port] = {}
    outputs: dict[str, Port] = {}
    components: dict[str, ComponentRef] = {}
    config_fields: dict[str, Port] = {}
    context_param: str | None = None
    is_composite: ClassVar[bool] = False

    Inputs: ClassVar[Any] = None
    Outputs: ClassVar[Any] = None
    Config: ClassVar[Any] = None
    _config_model_cache: ClassVar[Any] = None  # per class, built on first use

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.is_composite or cls.__dict__.get("_abstract", False) or "forward" not in cls.__dict__:
            return
        owner = cls.name or cls.__name__
        summary, arg_docs, out_docs = parse_docstring(cls.__doc__)
        cls.description = summary
        ins = _fields_of(cls.__dict__.get("Inputs", cls.Inputs))
        outs = _fields_of(cls.__dict__.get("Outputs", cls.Outputs))
        if not outs:
            raise TypeError(f"block {owner}: declare at least one output in class Outputs")
        cls.inputs = {n: _with_doc(p, arg_docs) for n, p in ins.items()}
        cls.outputs = {n: _with_doc(p, out_docs) for n, p in outs.items()}
        cls.components = _component_refs(owner, cls.__dict__.get("components", cls.components))
        raw_config = cls.__dict__.get("Config", cls.__dict__.get("config_defaults", None))
        cls.config_fields = config_fields_from(owner, raw_config) if raw_config is not None else dict(cls.config_fields)
        check_port_names(owner, "input", cls.inputs)
        check_port_names(owner, "output", cls.outputs)
        clash = set(cls.inputs) & set(cls.components)
        if clash:
            raise TypeError(f"block {owner}: {sorted(clash)} declared both as input and component")
        cls.context_param = _find_context_param(cls.forward)

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.config_overrides: dict[str, Any] = {}
        self.config: dict[str, Any] = {n: copy.deepcopy(p.default) for n, p in self.config_fields.items()}
        if config:
            self._apply_config(dict(config))

    def with_config(self, config: Mapping[str, Any] | None = None, **values: Any) -> Block:
        """A copy of this block with some config values changed (validated; ``GraphError`` if bad)."""
        merged = {**self.config_overrides, **(config or {}), **values}
        clone = copy.copy(self)
        clone.config_overrides = {}
        clone.config = {n: copy.deepcopy(p.default) for n, p in self.config_fields.items()}
        clone._apply_config(merged)
        return clone

    def _apply_config(self, values: dict[str, Any]) -> None:
        problems = self.config_problems(values)
        if problems:
            raise GraphError(problems, title=f"bad config for block {self.label}")
        coerced = self._config_model().model_validate(values).model_dump(include=set(values))
        self.config_overrides = {k: coerced[k] for k in values}
        self.config.update(self.config_overrides)
        self._on_config()

    def _on_config(self) -> None:
        """Hook for subclasses that pre-bind config (function blocks)."""

    def config_problems(self, values: Mapping[str, Any], node: str | None = None) -> list[Problem]:
        """Problems with a config dict for this block (unknown keys, wrong types, not JSON)."""
        from pydantic import ValidationError

        problems = []
        for key in values:
            if key not in self.config_fields:
                known = ", ".join(sorted(self.config_fields)) or "none"
                problems.append(Problem("bad_config", f"unknown config key {key!r} (known: {known})", node, key))
        try:
            json.dumps(dict(values))
        except (TypeError, ValueError) as exc:
            problems.append(Problem("bad_config", f"config is not JSON-serialisable: {exc}", node))
        if problems:
            return problems
        try:
            self._config_model().model_validate(dict(values))
        except ValidationError as exc:
            for err in exc.errors():
                field = str(err["loc"][0]) if err["loc"] else None
                problems.append(Problem("bad_config", f"config {field}: {err['msg']}", node, field))
        return problems

    def _config_model(self) -> Any:
        """The pydantic model that validates config (per function block, else per class)."""
        model = self.__dict__.get("_instance_config_model")
        if model is None:
            cls = type(self)
            model = cls.__dict__.get("_config_model_cache")
            if model is None:
                model = _build_config_model(self.label, self.config_fields)
                cls._config_model_cache = model
        return model

    @property
    def label(self) -> str:
        return self.name or type(self).__name__

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(self.outputs)

    def implementation(self) -> Callable[..., Any]:
        """The callable the executor calls with inputs, components (and ``ctx``) as keywords."""
        return self.forward

    def forward(self, **kwargs: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError(f"block {self.label} does not implement forward()")

    @property
    def identity(self) -> tuple[Any, ...]:
        """What makes two blocks "the same implementation" for memoisation."""
        if self.name is not None:
            return ("block", self.name, self.version)
        return ("class", type(self).__module__, type(self).__qualname__, id(type(self)), self.version)

    def required_components(self) -> dict[str, ComponentRef]:
        return dict(self.components)

    def __call__(self, components: Mapping[str, Any] | None = None, **inputs: Any) -> Any:
        """Run this block alone: ``scale_latents(latents=x)``; ``block(components=cm, prompt=...)``.

        Returns the output value when the block has one output, else a ``Result`` dict.
        """
        return call_block(self, components, inputs)

    def __copy__(self) -> Block:
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    def __repr__(self) -> str:
        ins = ", ".join(p.describe() for p in self.inputs.values())
        outs = ", ".join(f"{p.name}: {p.type_name}" for p in self.outputs.values())
        return f"<block {self.label} v{self.version} ({ins}) -> ({outs})>"


def _with_doc(port: Port, docs: dict[str, str]) -> Port:
    if port.description or port.name not in docs:
        return port
    return Port(port.name, port.type, port.default, docs[port.name])


def _find_context_param(fn: Callable[..., Any]) -> str | None:
    try:
        hints = inspect.get_annotations(fn, eval_str=True)
    except Exception:
        hints = getattr(fn, "__annotations__", {})
    for name, tp in hints.items():
        if tp is RunContext or tp == "RunContext":
            return name
    return None


def _build_config_model(owner: str, fields: dict[str, Port]) -> Any:
    from pydantic import ConfigDict, create_model

    definitions: dict[str, Any] = {n: (p.type, p.default) for n, p in fields.items()}
    safe = "".join(ch if ch.isalnum() else "_" for ch in owner)
    return create_model(f"{safe}_config", __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True), **definitions)
