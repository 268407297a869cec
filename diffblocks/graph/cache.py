"""Memoisation of top-level nodes: a bounded LRU of outputs keyed by what the node depends on.

Key = (node path, block identity + version, config, component fingerprints, input fingerprints,
grad mode). Tensors are fingerprinted cheaply and safely: small ones by content, large ones by
identity + torch's in-place ``_version`` counter (the entry keeps the tensor alive, so its id
cannot be reused by another tensor while the entry exists). A cached output that was later
modified in place is detected by its own ``_version`` and not served.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["MemoCache", "fingerprint", "value_bytes", "SMALL_TENSOR_NUMEL"]

#: Tensors up to this many elements are fingerprinted by content (a fresh but equal tensor hits).
SMALL_TENSOR_NUMEL = 4096
_MAX_DEPTH = 8


def fingerprint(value: Any, keep: list[Any], depth: int = 0) -> Any:
    """A hashable stand-in for ``value``. Objects fingerprinted by identity are appended to
    ``keep`` so the cache entry holds them (their id stays unique while the entry lives)."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return (type(value).__name__, value)
    if isinstance(value, torch.Tensor):
        return _tensor_fp(value, keep)
    if depth < _MAX_DEPTH:
        if isinstance(value, (list, tuple)):
            return (type(value).__name__, tuple(fingerprint(v, keep, depth + 1) for v in value))
        if isinstance(value, Mapping):
            return ("map", tuple((fingerprint(k, keep, depth + 1), fingerprint(v, keep, depth + 1)) for k, v in value.items()))
    if isinstance(value, torch.Generator):
        keep.append(value)
        state = value.get_state()
        return ("gen", id(value), hashlib.blake2b(state.numpy().tobytes(), digest_size=16).digest())
    keep.append(value)
    return ("obj", type(value).__qualname__, id(value))


def _tensor_fp(t: torch.Tensor, keep: list[Any]) -> Any:
    if t.numel() <= SMALL_TENSOR_NUMEL and t.device.type == "cpu" and t.layout == torch.strided:
        data = t.detach().contiguous()
        try:
            raw = data.view(torch.uint8).numpy().tobytes() if data.numel() else b""
        except (RuntimeError, TypeError):
            raw = data.float().numpy().tobytes()
        digest = hashlib.blake2b(raw, digest_size=16).digest()
        return ("tensor", str(t.dtype), tuple(t.shape), t.requires_grad, digest)
    keep.append(t)
    return ("tensor@", id(t), t._version, t.data_ptr(), tuple(t.shape), str(t.dtype), str(t.device))


def component_fingerprint(provider: Any, name: str, keep: list[Any]) -> Any:
    """A component's fingerprint. Providers may offer ``component_fingerprint(name)`` (so a lazy
    manager need not load anything); otherwise identity plus the parameters' in-place versions."""
    cheap = getattr(provider, "component_fingerprint", None)
    if cheap is not None:
        return ("provider", cheap(name))
    obj = provider[name]
    keep.append(obj)
    params = getattr(obj, "parameters", None)
    version = None
    if callable(params):
        try:
            version = sum(p._version for p in params())
        except Exception:
            version = None
    return ("component", id(obj), version, getattr(obj, "_diffblocks_revision", None))


def value_bytes(value: Any, depth: int = 0) -> int:
    """Bytes of tensor storage in ``value`` (lists, tuples and dicts walked)."""
    if isinstance(value, torch.Tensor):
        return int(value.numel() * value.element_size())
    if depth < _MAX_DEPTH:
        if isinstance(value, (list, tuple)):
            return sum(value_bytes(v, depth + 1) for v in value)
        if isinstance(value, Mapping):
            return sum(value_bytes(v, depth + 1) for v in value.values())
    return 0


def _version_counters(values: Any) -> tuple[Any, ...]:
    """Each output tensor's in-place version counter (None for non-tensors): an entry whose
    outputs were edited in place since it was stored no longer matches."""
    return tuple(v._version if isinstance(v, torch.Tensor) else None for v in values)


@dataclass
class _Entry:
    outputs: tuple[Any, ...]
    versions: tuple[Any, ...]
    nbytes: int
    keep: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class KeyParts:
    """The pieces of a cache key, kept per node to explain the next miss."""

    identity: Any
    config: str
    components: tuple[tuple[str, Any], ...]
    inputs: tuple[tuple[str, Any], ...]
    grad: bool

    def key(self, node: str) -> tuple[Any, ...]:
        return (node, self.identity, self.config, self.components, self.inputs, self.grad)


class MemoCache:
    """Bounded LRU of node outputs. ``max_entries`` / ``max_bytes`` bound it (bytes of tensor
    outputs); ``enabled=False`` turns it off. ``hits`` / ``misses`` count lookups."""

    def __init__(self, max_entries: int = 128, max_bytes: int = 4 << 30, enabled: bool = True) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.enabled = enabled
        self._entries: OrderedDict[tuple[Any, ...], _Entry] = OrderedDict()
        self._last: dict[str, KeyParts] = {}
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self._last.clear()
        self.nbytes = 0

    def lookup(self, node: str, parts: KeyParts) -> tuple[tuple[Any, ...] | None, list[str]]:
        """Cached outputs (or None) and, on a miss, the reasons."""
        key = parts.key(node)
        entry = self._entries.get(key)
        previous = self._last.get(node)
        self._last[node] = parts
        if entry is not None:
            if _version_counters(entry.outputs) == entry.versions:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry.outputs, []
            self._drop(key)
            self.misses += 1
            return None, ["a cached output was modified in place"]
        self.misses += 1
        return None, _reasons(previous, parts)

    def store(self, node: str, parts: KeyParts, outputs: tuple[Any, ...], keep: list[Any]) -> None:
        self._last[node] = parts
        size = sum(value_bytes(v) for v in outputs)
        if size > self.max_bytes or self.max_entries <= 0:
            return
        key = parts.key(node)
        if key in self._entries:
            self._drop(key)
        self._entries[key] = _Entry(outputs, _version_counters(outputs), size, keep)
        self.nbytes += size
        while len(self._entries) > self.max_entries or self.nbytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: tuple[Any, ...]) -> None:
        entry = self._entries.pop(key)
        self.nbytes -= entry.nbytes

    def __repr__(self) -> str:
        return f"MemoCache({len(self)} entries, {self.nbytes} bytes, hits={self.hits}, misses={self.misses})"


def _reasons(previous: KeyParts | None, now: KeyParts) -> list[str]:
    if previous is None:
        return ["first run"]
    reasons = []
    if previous.identity != now.identity:
        reasons.append("block changed")
    if previous.config != now.config:
        reasons.append("config changed")
    if previous.grad != now.grad:
        reasons.append("grad mode changed")
    old_c, new_c = dict(previous.components), dict(now.components)
    reasons += [f"component {n} changed" for n in new_c if old_c.get(n) != new_c[n]]
    old_i, new_i = dict(previous.inputs), dict(now.inputs)
    reasons += [f"input {n} changed" for n in new_i if old_i.get(n) != new_i[n]]
    return reasons or ["evicted from the cache"]
