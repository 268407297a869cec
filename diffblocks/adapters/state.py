"""What adapters a module carries, readable without importing peft (a cold peft import pulls in
much of transformers and takes seconds; reading a record must not)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["AdapterRecord", "RECORD_ATTR", "adapter_names", "lora_record"]

#: Attribute of an adapted module that holds its :class:`AdapterRecord`.
RECORD_ATTR = "_diffblocks_lora"


@dataclass
class AdapterRecord:
    """What is attached to one module: adapters in load order with their weight and content id."""

    weights: dict[str, float] = field(default_factory=dict)
    content: dict[str, str] = field(default_factory=dict)
    active: list[str] = field(default_factory=list)
    enabled: bool = True
    fused: tuple[float, tuple[str, ...]] | None = None

    def token(self) -> tuple:
        """Hashable summary: equal tokens mean the module computes the same function."""
        adapters = tuple((n, self.content[n], self.weights[n], n in self.active) for n in self.weights)
        return ("lora", adapters, self.enabled, self.fused)


def lora_record(module: torch.nn.Module) -> AdapterRecord | None:
    """The adapters attached to ``module`` by this package (None if none)."""
    return getattr(module, _RECORD, None)


def adapter_names(module: torch.nn.Module) -> list[str]:
    record = lora_record(module)
    return list(record.weights) if record else []


def lora_record(module: Any) -> AdapterRecord | None:
    """The LoRA adapters attached to ``module`` by this package (None if none)."""
    return getattr(module, RECORD_ATTR, None)


def adapter_names(module: Any) -> list[str]:
    """Names of the LoRA adapters on ``module``, in load order."""
    record = lora_record(module)
    return list(record.weights) if record else []
