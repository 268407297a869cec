"""(library, class name) -> component class.

A component's ``type_hint`` (as written in ``model_index.json`` / ``modular_model_index.json``)
names a class by library and class name. This module maps those names to classes:

* ``("diffusers", <model or scheduler>)`` -> diffblocks' own model and scheduler classes,
* ``("transformers", <allow-listed text encoder / tokenizer>)`` -> that transformers class,
* anything registered with :func:`register_component_class` or through the
  ``diffblocks.components`` entry-point group (name ``"<library>.<Class>"``, value
  ``"module:attr"``),
* anything else only with ``trust_remote_code=True`` (see :mod:`diffblocks.registry.trust`).

Built-in targets are import strings resolved on first use, so importing this module never
imports torch models, schedulers or transformers.
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points
from typing import Any

from diffblocks.registry.trust import import_untrusted

__all__ = [
    "ComponentTypeError",
    "TRANSFORMERS_ALLOWED",
    "builtin_type_hints",
    "is_scheduler_hint",
    "register_component_class",
    "resolve_component_class",
    "unregister_component_class",
]

ENTRY_POINT_GROUP = "diffblocks.components"

# Our own implementations of the diffusers classes whose on-disk format we read.
_DIFFUSERS_MODELS: dict[str, str] = {
    "UNet2DConditionModel": "diffblocks.models:UNet2DConditionModel",
    "AutoencoderKL": "diffblocks.models:AutoencoderKL",
    "FluxTransformer2DModel": "diffblocks.models:FluxTransformer2DModel",
    "ControlNetModel": "diffblocks.models:ControlNetModel",
    "T2IAdapter": "diffblocks.models:T2IAdapter",
    "MultiControlNetModel": "diffblocks.models.multi_controlnet:MultiControlNetModel",
}

# Scheduler classes we implement. The authoritative table is diffblocks.schedulers.SCHEDULER_CLASSES
# (consulted too, so a scheduler added there needs no edit here); this list makes the
# allow-list readable without importing the schedulers.
_DIFFUSERS_SCHEDULERS: tuple[str, ...] = (
    "DDIMScheduler",
    "DDPMScheduler",
    "PNDMScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "HeunDiscreteScheduler",
    "LMSDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSDEScheduler",
    "UniPCMultistepScheduler",
    "FlowMatchEulerDiscreteScheduler",
)

# transformers classes that are safe to load by name: they are code from an installed,
# versioned library (not from a repo) and they are what diffusion pipelines use as text
# encoders, tokenizers and image encoders.
TRANSFORMERS_ALLOWED: frozenset[str] = frozenset(
    {
        "CLIPTextModel",
        "CLIPTextModelWithProjection",
        "CLIPVisionModel",
        "CLIPVisionModelWithProjection",
        "CLIPImageProcessor",
        "CLIPFeatureExtractor",
        "CLIPTokenizer",
        "CLIPTokenizerFast",
        "T5EncoderModel",
        "T5Tokenizer",
        "T5TokenizerFast",
        "UMT5EncoderModel",
        "SiglipVisionModel",
        "SiglipImageProcessor",
        "GemmaTokenizer",
        "GemmaTokenizerFast",
        "AutoTokenizer",
    }
)


class ComponentTypeError(LookupError):
    """A type hint that names no known, registered or trusted class, or whose import failed."""


_lock = threading.Lock()
_plugins: dict[tuple[str, str], Any] = {}  # value: a class or a "module:attr" string
_entry_points_loaded = False


def register_component_class(library: str, name: str, cls: type | str) -> None:
    """Register ``cls`` (a class or a ``"module:attr"`` import string) for the hint ``(library, name)``.

    A registered plugin needs no ``trust_remote_code``: registering it is the act of trust.
    Registering a built-in hint overrides the built-in (useful in tests and for forks).
    """
    if not library or not name:
        raise ValueError("register_component_class needs a non-empty library and class name")
    if isinstance(cls, str) and ":" not in cls:
        raise ValueError(f"import string '{cls}' must look like 'package.module:ClassName'")
    with _lock:
        _plugins[(library, name)] = cls


def unregister_component_class(library: str, name: str) -> None:
    """Remove a registration made with :func:`register_component_class` (no error if absent)."""
    with _lock:
        _plugins.pop((library, name), None)


def builtin_type_hints() -> list[tuple[str, str]]:
    """Every (library, class) pair that resolves without registration or trust."""
    hints = [("diffusers", n) for n in _DIFFUSERS_MODELS]
    hints += [("diffusers", n) for n in _DIFFUSERS_SCHEDULERS]
    hints += [("transformers", n) for n in sorted(TRANSFORMERS_ALLOWED)]
    return hints


def is_scheduler_hint(library: str, name: str) -> bool:
    """True when the hint names one of our schedulers (config-only, stateful: never shared)."""
    return library == "diffusers" and (name in _DIFFUSERS_SCHEDULERS or name.endswith("Scheduler"))


def _load_entry_points() -> None:
    global _entry_points_loaded
    with _lock:
        if _entry_points_loaded:
            return
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            library, _, name = ep.name.rpartition(".")
            if library and name:
                _plugins.setdefault((library, name), ep.value)
        _entry_points_loaded = True


def _import_string(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _scheduler_class(name: str) -> Any | None:
    schedulers = importlib.import_module("diffblocks.schedulers")
    table = getattr(schedulers, "SCHEDULER_CLASSES", {})
    return table.get(name) or getattr(schedulers, name, None)


def _where(component: str | None) -> str:
    return f"component '{component}': " if component else ""


def resolve_component_class(
    library: str, name: str, *, trust_remote_code: bool = False, component: str | None = None
) -> type:
    """Return the class for the type hint ``(library, name)``.

    Raises :class:`ComponentTypeError` for an unknown hint or a failed built-in import, and
    :class:`~diffblocks.registry.trust.UntrustedCodeError` for a hint that would import code
    outside the allow-list without ``trust_remote_code=True``. ``component`` only names the
    component in error messages.
    """
    if not isinstance(library, str) or not isinstance(name, str) or not library or not name:
        raise ComponentTypeError(
            f"{_where(component)}type hint ({library!r}, {name!r}) must be two non-empty strings "
            "(library, class name)"
        )
    _load_entry_points()
    hint = f"('{library}', '{name}')"
    try:
        with _lock:
            plugin = _plugins.get((library, name))
        if plugin is not None:
            return plugin if isinstance(plugin, type) else _import_string(plugin)
        if library == "diffusers":
            if name in _DIFFUSERS_MODELS:
                return _import_string(_DIFFUSERS_MODELS[name])
            cls = _scheduler_class(name) if is_scheduler_hint(library, name) else None
            if cls is not None:
                return cls
            raise ComponentTypeError(
                f"{_where(component)}type hint {hint} has no diffblocks implementation. "
                f"Built-in diffusers classes: {', '.join(list(_DIFFUSERS_MODELS) + list(_DIFFUSERS_SCHEDULERS))}. "
                "Register your own with register_component_class('diffusers', "
                f"'{name}', cls)."
            )
        if library == "transformers" and name in TRANSFORMERS_ALLOWED:
            return getattr(importlib.import_module("transformers"), name)
    except (ImportError, AttributeError) as err:
        raise ComponentTypeError(
            f"{_where(component)}type hint {hint} is known but its class could not be imported: {err}"
        ) from err
    # Not built in, not registered: only an explicitly trusted import may proceed.
    try:
        return import_untrusted(library, name, trust_remote_code=trust_remote_code, component=component)
    except (ImportError, AttributeError) as err:
        raise ComponentTypeError(f"{_where(component)}type hint {hint} could not be imported: {err}") from err
