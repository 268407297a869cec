"""Model configs: a frozen dataclass per model whose fields are diffusers' ``config.json`` keys,
checked on construction (types, sizes against ``diffblocks.limits``, unsupported branches), and
the output dataclass models return. Weight loading is in :mod:`diffblocks.models.modeling`."""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Self

from diffblocks import limits
from diffblocks.formats import DIFFUSERS_FORMAT_VERSION

__all__ = ["ModelConfig", "ModelConfigError", "ModelOutput"]

logger = logging.getLogger("diffblocks.models.modeling")


class ModelConfigError(ValueError):
    """A model config key with a value of the wrong type, out of range, or for a branch we do not build."""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _matches(value: Any, tp: Any) -> bool:
    """Whether a JSON-ish ``value`` fits the annotation ``tp`` (the shapes config fields use)."""
    if tp is Any:
        return True
    if tp is None or tp is type(None):
        return value is None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(args) == len(value) and all(_matches(v, a) for v, a in zip(value, args))
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    return True


def _describe(tp: Any) -> str:
    if tp is None or tp is type(None):
        return "null"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of ({_describe(args[0])})"
        return f"a list of {len(args)}"
    return {bool: "true/false", int: "an integer", float: "a finite number", str: "a string"}.get(tp, str(tp))


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _freeze(value: Any) -> Any:
    """JSON lists become tuples (recursively) so a config is hashable and immutable."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, tuple):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def _fixed_value(value: Any, allowed: tuple[Any, ...]) -> bool:
    """``value in allowed`` where 0/1 never pass for False/True (and unhashables just fail)."""
    return any(value is a if isinstance(a, bool) or a is None or isinstance(value, bool) else value == a for a in allowed)


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Base for model configs: a frozen dataclass whose fields are diffusers' config keys.

    Subclasses declare:
      * ``class_name``: the diffusers ``_class_name`` the config answers to;
      * ``fixed``: diffusers keys we accept only at the listed values (the branches we do not
        implement); any other value raises ``ValueError`` naming key and value;
      * ``ignored``: diffusers keys that have no effect on the model we build.
    Unknown keys are logged and dropped, as diffusers does with keys of newer versions.
    """

    class_name: ClassVar[str] = ""
    fixed: ClassVar[Mapping[str, tuple[Any, ...]]] = {}
    ignored: ClassVar[frozenset[str]] = frozenset()
    #: Sizes checked before anything is built: key -> (limit name in diffblocks.limits or None,
    #: minimum). A tuple value is checked per entry (nested ones too), its length against
    #: ``model_blocks``.
    bounds: ClassVar[Mapping[str, tuple[str | None, int]]] = {}

    def __post_init__(self) -> None:
        # Lists passed to the constructor directly become tuples too (hashable, immutable).
        # Subclasses that validate in their own __post_init__ call this first, so that their
        # own checks only ever see values of the declared types within the limits.
        hints = _field_types(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                value = _freeze(value)
                object.__setattr__(self, f.name, value)
            if not _matches(value, hints.get(f.name, Any)):
                raise self.invalid(f.name, value, f"must be {_describe(hints[f.name])}")
        where = self.class_name or type(self).__name__
        for key, (limit, minimum) in self.bounds.items():
            value = getattr(self, key)
            if isinstance(value, tuple):
                if not value:
                    raise self.invalid(key, value, "must not be empty")
                limits.check("model_blocks", len(value), key=f"len({key})", where=where)
            for v in _leaves(value):
                if isinstance(v, int) and not isinstance(v, bool) and v < minimum:
                    raise self.invalid(key, value, f"must be at least {minimum}")
                if limit is not None:
                    limits.check(limit, v, key=key, where=where)

    def check_divides(self, groups_key: str, channels_key: str) -> None:
        """GroupNorm splits channels into groups: every ``channels_key`` entry must divide evenly."""
        groups = getattr(self, groups_key)
        for channels in _leaves(getattr(self, channels_key)):
            if isinstance(groups, int) and isinstance(channels, int) and groups and channels % groups:
                raise self.invalid(
                    channels_key, getattr(self, channels_key), f"must be multiples of {groups_key} = {groups}"
                )

    def invalid(self, key: str, value: Any, why: str) -> ModelConfigError:
        """The error for a bad value of ``key`` (raise it in ``__post_init__``)."""
        return ModelConfigError(f"{self.class_name or type(self).__name__}: config key {key!r} = {_short(value)} {why}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from a diffusers config dict (as read from ``config.json``)."""
        if not isinstance(data, Mapping):
            raise ModelConfigError(f"{cls.class_name or cls.__name__}: a config is a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if not isinstance(key, str) or key.startswith("_") or key in cls.ignored:
                continue
            try:
                frozen = _freeze(value)
            except RecursionError:
                raise ModelConfigError(f"{cls.class_name or cls.__name__}: config key {key!r} is nested too deeply") from None
            if key in names:
                kwargs[key] = frozen
            elif key in cls.fixed:
                if not _fixed_value(frozen, cls.fixed[key]):
                    raise ModelConfigError(
                        f"{cls.class_name or cls.__name__}: config key {key!r} = {value!r} is not "
                        f"supported (supported: {', '.join(map(repr, cls.fixed[key]))})"
                    )
            else:
                logger.warning("%s: ignoring unknown config key %r = %r", cls.__name__, key, value)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The dict ``save_pretrained`` writes as ``config.json`` (diffusers can read it)."""
        out: dict[str, Any] = {"_class_name": self.class_name, "_diffusers_version": DIFFUSERS_FORMAT_VERSION}
        for f in dataclasses.fields(self):
            out[f.name] = _thaw(getattr(self, f.name))
        for key, allowed in self.fixed.items():
            out.setdefault(key, _thaw(allowed[0]))
        return out

    def replace(self, **changes: Any) -> Self:
        """A copy with some keys changed (validated like a new config)."""
        return dataclasses.replace(self, **{k: _freeze(v) for k, v in changes.items()})

    def unsupported(self, key: str, value: Any, supported: Any) -> ModelConfigError:
        """The error for a value of ``key`` we do not implement (raise it in ``__post_init__``)."""
        return self.invalid(key, value, f"is not supported (supported: {supported})")


@dataclasses.dataclass
class ModelOutput:
    """A forward result with named fields that also indexes like a tuple (``out[0]``), as in diffusers."""

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    def __getitem__(self, index: int | str) -> Any:
        if isinstance(index, str):
            return getattr(self, index)
        return self.to_tuple()[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.to_tuple())
