"""Port types: plain Python types plus semantic types for the values of a diffusion graph.

A semantic type (``Latents``, ``PromptEmbeds`` …) is a marker class: at run time the value is
an ordinary ``torch.Tensor`` (or int, or generator), but at wiring time the graph knows what
the tensor *means*, so prompt embeddings cannot be fed into a latents port by accident.

Compatibility (``is_compatible(source, target)``):

* ``Any`` on either side connects to everything;
* a semantic type connects to itself (and subclasses), to its plain base type
  (``Latents`` -> ``torch.Tensor``) and to ``Any``; two different semantic types do not connect;
* a plain ``torch.Tensor`` output may feed a semantic tensor port (the user vouches for it);
* ``Optional[X]`` / ``X | None`` / unions: the source connects if any member connects;
* plain classes connect by subclassing, and ``int`` feeds ``float``.

Adding a type is one class statement::

    class DepthMap(SemanticTensor):
        '''Per-pixel depth (B, 1, H, W).'''
"""

from __future__ import annotations

import types
import typing
from functools import lru_cache
from typing import Any, Union

import torch

__all__ = [
    "SemanticType", "SemanticTensor",
    "Latents", "PromptEmbeds", "PooledEmbeds", "TextIds", "PromptMask", "Timesteps", "Timestep",
    "Sigmas", "NoisePred", "Images", "Mask", "Noise", "Generator", "Seed", "TimeIds",
    "ImageLatents", "LatentIds", "ControlImage", "ControlResiduals", "MidResidual", "AdapterResiduals",
    "is_compatible", "type_name", "strip_optional", "is_optional", "validate_value",
    "PORT_TYPES", "port_type_by_name",
]


class _SemanticMeta(type):
    """Makes ``isinstance(value, Latents)`` check the run-time base type (a tensor)."""

    __base_type__: type

    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, cls.__base_type__)

    def __repr__(cls) -> str:
        return cls.__name__


#: Port types by name, for graph files (``"over_type": "Timesteps"``). Semantic types add
#: themselves when defined; ``port_type_by_name`` also knows a few plain types.
PORT_TYPES: dict[str, Any] = {"Any": Any, "int": int, "float": float, "str": str, "bool": bool, "Tensor": torch.Tensor}


class SemanticType(metaclass=_SemanticMeta):
    """Base of semantic port types. Subclass and set ``__base_type__`` to the run-time type."""

    __base_type__: type = object

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        PORT_TYPES.setdefault(cls.__name__, cls)

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{cls.__name__} is a port type marker; pass a {cls.__base_type__.__name__} instead")

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.is_instance_schema(cls.__base_type__)


class SemanticTensor(SemanticType):
    """A ``torch.Tensor`` with a meaning; the base of the tensor port types."""

    __base_type__ = torch.Tensor


class Latents(SemanticTensor):
    """Latent images in the denoiser's space, (B, C, H, W) or packed (B, N, C)."""


class ImageLatents(SemanticTensor):
    """Latents of a reference image (img2img / inpaint), already scaled by the VAE factor."""


class Noise(SemanticTensor):
    """Gaussian noise shaped like the latents."""


class PromptEmbeds(SemanticTensor):
    """Per-token text embeddings (B, T, D) that condition the denoiser."""


class PooledEmbeds(SemanticTensor):
    """Pooled text embeddings (B, D) (SDXL add-embeds, Flux pooled projection)."""


class PromptMask(SemanticTensor):
    """Attention mask of the prompt tokens (B, T)."""


class TextIds(SemanticTensor):
    """Position ids of text tokens (Flux RoPE), (T, 3)."""


class LatentIds(SemanticTensor):
    """Position ids of packed latent tokens (Flux RoPE), (N, 3)."""


class TimeIds(SemanticTensor):
    """SDXL micro-conditioning (original size, crop, target size), (B, 6)."""


class Timesteps(SemanticTensor):
    """The 1-D schedule of timesteps the denoise loop iterates over."""


class Timestep(SemanticTensor):
    """One timestep (0-d tensor): the loop item of a denoise loop."""


class Sigmas(SemanticTensor):
    """Noise levels matching the timesteps (k-diffusion convention)."""


class NoisePred(SemanticTensor):
    """The denoiser's raw prediction (epsilon, v, or flow velocity)."""


class Images(SemanticType):
    """Decoded images: a tensor (B, C, H, W) in [-1, 1] / [0, 1], or a list of PIL images."""

    __base_type__ = object


class Mask(SemanticTensor):
    """An inpainting mask (B, 1, H, W), 1 where the image is repainted."""


class Generator(SemanticType):
    """A ``torch.Generator`` that random draws come from."""

    __base_type__ = torch.Generator


class Seed(SemanticType):
    """An integer random seed."""

    __base_type__ = int


class ControlImage(SemanticType):
    """A prepared control image (B, 3, H, W) in [0, 1], or a list of them (one per ControlNet)."""

    __base_type__ = object


class ControlResiduals(SemanticType):
    """A ControlNet's residuals for the UNet's down blocks (a list of tensors)."""

    __base_type__ = list


class MidResidual(SemanticTensor):
    """A ControlNet's residual for the UNet's mid block."""


class AdapterResiduals(SemanticType):
    """T2I-Adapter features added inside the UNet's down blocks (a list of tensors)."""

    __base_type__ = list


_NONE = type(None)


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def is_optional(tp: Any) -> bool:
    """True for ``Optional[X]``, ``X | None`` and ``Any``."""
    if tp is Any:
        return True
    args = _union_args(tp)
    return args is not None and _NONE in args


def strip_optional(tp: Any) -> Any:
    """``Optional[X]`` -> ``X``; anything else unchanged."""
    args = _union_args(tp)
    if args is None or _NONE not in args:
        return tp
    rest = tuple(a for a in args if a is not _NONE)
    if len(rest) == 1:
        return rest[0]
    return Union[rest]


def _strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


@lru_cache(maxsize=4096)
def is_compatible(source: Any, target: Any) -> bool:
    """Whether an output of type ``source`` may feed an input of type ``target``."""
    source, target = _strip_annotated(source), _strip_annotated(target)
    if source is Any or target is Any or source is target:
        return True
    if source is _NONE:
        return is_optional(target)
    src_members = _union_args(source)
    if src_members is not None:
        return any(is_compatible(m, target) for m in src_members if m is not _NONE)
    dst_members = _union_args(target)
    if dst_members is not None:
        return any(is_compatible(source, m) for m in dst_members)
    return _class_compatible(source, target)


def _class_compatible(source: Any, target: Any) -> bool:
    src_origin = typing.get_origin(source) or source
    dst_origin = typing.get_origin(target) or target
    if not (isinstance(src_origin, type) and isinstance(dst_origin, type)):
        return bool(source == target)
    src_sem = issubclass(src_origin, SemanticType)
    dst_sem = issubclass(dst_origin, SemanticType)
    if src_sem and dst_sem:
        return issubclass(src_origin, dst_origin)
    if issubclass(src_origin, SemanticType):  # Latents -> torch.Tensor / object
        return issubclass(src_origin.__base_type__, dst_origin)
    if issubclass(dst_origin, SemanticType):  # a plain tensor may feed a semantic tensor port
        base = dst_origin.__base_type__
        if base is object:  # e.g. Images: tensors or lists of PIL images, not any value at all
            return issubclass(src_origin, (torch.Tensor, list, tuple))
        return issubclass(src_origin, base)
    if src_origin is int and dst_origin is float:
        return True
    if issubclass(src_origin, dst_origin):
        src_args, dst_args = typing.get_args(source), typing.get_args(target)
        if not src_args or not dst_args or len(src_args) != len(dst_args):
            return True
        return all(is_compatible(s, d) for s, d in zip(src_args, dst_args))
    return False


def type_name(tp: Any) -> str:
    """A short readable name: ``Latents``, ``int | None``, ``list[str]``, ``Tensor``."""
    tp = _strip_annotated(tp)
    if tp is Any:
        return "Any"
    if tp is _NONE or tp is None:
        return "None"
    members = _union_args(tp)
    if members is not None:
        return " | ".join(type_name(m) for m in members)
    origin = typing.get_origin(tp)
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if isinstance(tp, type):
        return tp.__name__
    if isinstance(tp, str):
        return tp
    return str(tp).replace("typing.", "")


@lru_cache(maxsize=512)
def _adapter(tp: Any) -> Any:
    from pydantic import ConfigDict, TypeAdapter

    return TypeAdapter(tp, config=ConfigDict(arbitrary_types_allowed=True))


def validate_value(tp: Any, value: Any) -> Any:
    """Validate (and, for plain types, coerce) a user value against a port type with pydantic.

    Raises ``ValueError`` with a short message when the value does not fit.
    Tensors and other objects are checked by ``isinstance`` only (never copied).
    """
    if tp is Any:
        return value
    try:
        adapter = _adapter(tp)
    except Exception:  # an exotic annotation pydantic cannot model: accept as is
        return value
    from pydantic import ValidationError

    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"expects {type_name(tp)}, got {type(value).__name__}: {first['msg']}") from None


def port_type_by_name(name: str) -> Any:
    """The port type a graph file names (``"Timesteps"``, ``"float"``); ``KeyError`` if unknown."""
    return PORT_TYPES[name]
