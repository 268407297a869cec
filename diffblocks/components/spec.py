"""ComponentSpec: how to obtain one component (a model, tokenizer or scheduler)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

__all__ = ["ComponentSpec", "ComponentError"]


class ComponentError(Exception):
    """A component could not be described, resolved or loaded; the message names it and the fix."""


def _is_local(path: str | None) -> bool:
    return path is not None and (os.path.isabs(path) or path.startswith(".") or os.path.isdir(path))


@dataclass(frozen=True, eq=False)
class ComponentSpec:
    """Where a component comes from and which class builds it.

    ``type_hint`` is ``(library, class name)`` as in diffusers' index files, e.g.
    ``("diffusers", "UNet2DConditionModel")``; it is resolved through
    :mod:`diffblocks.registry.components`. A component either comes from files
    (``pretrained_model_name_or_path`` + ``subfolder``, a local folder or a Hub repo id) or,
    for config-only components such as schedulers, from ``config`` (a JSON-able dict).

    Two specs are equal (and hash alike) when they would load the same object: equality
    ignores ``name`` and compares :attr:`identity`.
    """

    name: str
    type_hint: tuple[str, str] | None = None
    pretrained_model_name_or_path: str | None = None
    subfolder: str | None = None
    variant: str | None = None
    revision: str | None = None
    config: Mapping[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ComponentError(f"a component needs a non-empty string name, got {self.name!r}")
        hint = self.type_hint
        if hint is not None:
            if not (isinstance(hint, (tuple, list)) and len(hint) == 2 and all(isinstance(h, str) and h for h in hint)):
                raise ComponentError(
                    f"component '{self.name}': type_hint must be (library, class name), got {hint!r}"
                )
            object.__setattr__(self, "type_hint", (hint[0], hint[1]))
        path = self.pretrained_model_name_or_path
        if isinstance(path, os.PathLike):
            object.__setattr__(self, "pretrained_model_name_or_path", os.fspath(path))
        if self.config is not None:
            # Frozen means frozen: keep our own copy, and fail now if it cannot be saved as JSON.
            try:
                object.__setattr__(self, "config", json.loads(json.dumps(dict(self.config))))
            except (TypeError, ValueError) as err:
                raise ComponentError(f"component '{self.name}': config is not JSON-serialisable: {err}") from err

    # -- identity -------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        """True when the source is a folder on this machine (it wins over any Hub id)."""
        return _is_local(self.pretrained_model_name_or_path)

    @property
    def source(self) -> str | None:
        """The source, with local folders made absolute so that equal folders compare equal."""
        path = self.pretrained_model_name_or_path
        if path is None:
            return None
        return str(Path(path).expanduser().resolve()) if self.is_local else path

    @property
    def identity(self) -> tuple:
        """What identifies the loaded object: class, source, subfolder, variant, revision, config."""
        config = json.dumps(self.config, sort_keys=True) if self.config is not None else None
        revision = None if self.is_local else self.revision
        return (self.type_hint, self.source, self.subfolder or None, self.variant, revision, config)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ComponentSpec):
            return NotImplemented
        return self.identity == other.identity

    def __hash__(self) -> int:
        return hash(self.identity)

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_config(cls, name: str, type_hint: tuple[str, str], config: Mapping[str, Any]) -> "ComponentSpec":
        """A config-only component (a scheduler): built with ``cls.from_config(config)``, no files."""
        return cls(name=name, type_hint=type_hint, config=config)

    def with_updates(self, **changes: Any) -> "ComponentSpec":
        """A copy with some fields changed (specs are frozen)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The loading fields as written in ``modular_model_index.json``."""
        return {
            "type_hint": list(self.type_hint) if self.type_hint else None,
            "pretrained_model_name_or_path": self.pretrained_model_name_or_path,
            "subfolder": self.subfolder,
            "variant": self.variant,
            "revision": self.revision,
        }

