"""The canonical form of one LoRA layer, shared by every file layout."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["LoraError", "LoraFormatError", "LoraWeights"]


class LoraError(ValueError):
    """An adapter operation that cannot be done (unknown name, shape mismatch, fused state)."""


class LoraFormatError(ValueError):
    """The file is not a LoRA we can read, or some of its keys match no module."""


@dataclass(frozen=True)
class LoraWeights:
    """One layer's low-rank update: ``delta W = scale * up @ down`` with ``scale = alpha / rank``.

    ``down`` is ``[rank, in]`` (``[rank, in, kh, kw]`` for a conv), ``up`` is ``[out, rank]``
    (``[out, rank, 1, 1]``); ``alpha`` is None when the file stores none (scale 1).
    """

    down: torch.Tensor
    up: torch.Tensor
    alpha: float | None = None

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def effective_alpha(self) -> float:
        return float(self.alpha) if self.alpha is not None else float(self.rank)
