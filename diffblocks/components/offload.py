"""Model CPU offload: at most one model on the accelerator at a time.

Each attached model gets its entry points wrapped (``forward``, and ``encode`` / ``decode``
where present: a VAE is called through ``decode``, which never goes through ``forward``, so
hooking ``forward`` alone, as accelerate's module hooks do, would leave it on the CPU).
Calling an entry point first moves the previously active model back to the offload device,
then this one (and its tensor arguments) to the execution device. The move is a function
argument, so tests can check the policy on a CPU-only machine with a recording mover.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["ENTRY_POINTS", "ModelOffloader", "move_to_device"]

ENTRY_POINTS = ("forward", "encode", "decode")
Mover = Callable[[torch.nn.Module, torch.device], None]


def _default_move(module: torch.nn.Module, device: torch.device) -> None:
    module.to(device)


def move_to_device(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor inside (lists, tuples, dicts) moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        moved = [move_to_device(v, device) for v in value]
        return type(value)(moved) if not hasattr(value, "_fields") else type(value)(*moved)
    if isinstance(value, dict):
        return {k: move_to_device(v, device) for k, v in value.items()}
    return value


class ModelOffloader:
    """Keep one model at a time on ``execution_device``; the others wait on ``offload_device``."""

    def __init__(
        self,
        execution_device: torch.device | str,
        offload_device: torch.device | str = "cpu",
        move: Mover | None = None,
    ) -> None:
        self.execution_device = torch.device(execution_device)
        self.offload_device = torch.device(offload_device)
        self._move = move or _default_move
        self._models: dict[str, torch.nn.Module] = {}
        self._wrapped: dict[str, list[str]] = {}
        self.active: str | None = None
        self._lock = threading.RLock()

    @property
    def names(self) -> list[str]:
        """Names of the attached models."""
        return list(self._models)

    def attach(self, name: str, module: torch.nn.Module) -> None:
        """Offload ``module`` now and bring it back on its next call."""
        with self._lock:
            if name in self._models:
                self.detach(name)
            self._models[name] = module
            self._wrapped[name] = []
            for entry in ENTRY_POINTS:
                method = getattr(module, entry, None)
                if method is None or not callable(method) or entry in vars(module):
                    continue
                setattr(module, entry, self._wrap(name, method))
                self._wrapped[name].append(entry)
            self._move(module, self.offload_device)

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            self.activate(name)
            args = move_to_device(args, self.execution_device)
            kwargs = move_to_device(kwargs, self.execution_device)
            return method(*args, **kwargs)

        call.__diffblocks_offload__ = True  # type: ignore[attr-defined]
        return call

    def activate(self, name: str) -> None:
        """Move ``name`` to the execution device, after moving the active model off it."""
        with self._lock:
            if self.active == name:
                return
            if self.active is not None and self.active in self._models:
                self._move(self._models[self.active], self.offload_device)
            self._move(self._models[name], self.execution_device)
            self.active = name

    def offload_all(self) -> None:
        """Move every attached model to the offload device (e.g. after a pipeline run)."""
        with self._lock:
            if self.active is not None and self.active in self._models:
                self._move(self._models[self.active], self.offload_device)
            self.active = None

    def detach(self, name: str) -> torch.nn.Module | None:
        """Remove the wrappers from ``name``; the model stays where it is."""
        with self._lock:
            module = self._models.pop(name, None)
            for entry in self._wrapped.pop(name, []):
                if module is not None and entry in vars(module):
                    delattr(module, entry)
            if self.active == name:
                self.active = None
            return module

    def detach_all(self) -> None:
        """Remove every wrapper."""
        for name in list(self._models):
            self.detach(name)
