"""The conversion engine: readable key tables, applied in both directions.

A table is a list of `Row`s. Each row maps a diffusers key prefix (``down_blocks.0.resnets.1.``)
to the original-layout prefix (``input_blocks.1.0.``) and names a *leaf table*: renames of the
first dotted components below the prefix (``norm1`` -> ``in_layers.0``), each with an optional
transform (`Leaf`). One table serves loading and saving: every key of the diffusers model is
mapped to (original key, transform), and the two directions read that one mapping backwards
and forwards. A model key no row covers is a *miss* and an error, never silently dropped.

Transforms (``op``):
  * ``same``      the tensor as it is;
  * ``part``      one slice along dim 0 of a fused original tensor (BFL ``qkv``, OpenCLIP
                  ``in_proj_weight``); slice sizes come from the model's own shapes;
  * ``conv1x1``   the original is a 1x1 convolution, diffusers a linear layer (VAE attention);
  * ``transpose`` the original stores the matrix transposed (OpenCLIP ``text_projection``);
  * ``swap``      the two halves along dim 0 are swapped (BFL final ``adaLN_modulation``
                  is shift, scale; diffusers' ``norm_out.linear`` is scale, shift).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["Leaf", "LeafTable", "Row", "Target", "KeyMap", "ConversionError"]

OPS = ("same", "part", "conv1x1", "transpose", "swap")


class ConversionError(ValueError):
    """A checkpoint whose keys or shapes do not fit the model; the message lists them all."""


@dataclass(frozen=True)
class Leaf:
    """A renamed leaf: the original name below the row's prefix, and how the tensor changes."""

    name: str
    op: str = "same"
    part: int = 0  # position of this tensor inside the fused original (op == "part")

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown transform {self.op!r} (known: {OPS})")


LeafTable = Mapping[str, "str | Leaf"]


@dataclass(frozen=True)
class Row:
    """diffusers prefix -> original prefix, with leaf renames below it (identity when empty)."""

    ours: str
    theirs: str
    leaves: LeafTable = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    key: str
    op: str = "same"
    part: int = 0


def _leaf_for(rest: str, leaves: LeafTable) -> tuple[str, Leaf]:
    """The longest leaf entry equal to ``rest`` or a dotted prefix of it; returns (new rest, leaf)."""
    parts = rest.split(".")
    for n in range(len(parts), 0, -1):
        head = ".".join(parts[:n])
        if head in leaves:
            leaf = leaves[head]
            leaf = Leaf(leaf) if isinstance(leaf, str) else leaf
            tail = ".".join(parts[n:])
            return (f"{leaf.name}.{tail}" if tail else leaf.name), leaf
    return rest, Leaf(rest)


class KeyMap:
    """The mapping of one model's keys, built from its table and its state-dict keys.

    ``KeyMap(rows, model_keys, prefix="model.diffusion_model.")`` puts ``prefix`` before every
    original key (the place of the component inside a whole-pipeline file).
    """

    def __init__(self, rows: Sequence[Row], model_keys: Iterable[str], prefix: str = "") -> None:
        # Longest prefix first, so ``down_blocks.0.attentions.0.`` wins over ``down_blocks.0.``.
        ordered = sorted(rows, key=lambda r: len(r.ours), reverse=True)
        self.prefix = prefix
        self.targets: dict[str, Target] = {}
        misses = []
        for key in model_keys:
            row = next((r for r in ordered if key.startswith(r.ours)), None)
            if row is None:
                misses.append(key)
                continue
            rest, leaf = _leaf_for(key[len(row.ours):], row.leaves)
            self.targets[key] = Target(prefix + row.theirs + rest, leaf.op, leaf.part)
        if misses:
            raise ConversionError(f"no conversion rule for {len(misses)} model key(s): {', '.join(misses[:20])}")
        # original key -> the model keys it holds, in part order
        groups: dict[str, list[tuple[int, str]]] = {}
        for key, t in self.targets.items():
            groups.setdefault(t.key, []).append((t.part, key))
        self.groups = {k: [key for _, key in sorted(v)] for k, v in groups.items()}

    @property
    def original_keys(self) -> set[str]:
        return set(self.groups)

    # -- original -> diffusers ---------------------------------------------------------------
    def to_model(
        self, original: Mapping[str, Any], shapes: Mapping[str, torch.Size], *, source: str = "checkpoint"
    ) -> dict[str, Any]:
        """Convert original-layout tensors to the model's keys; ``shapes`` are the model's shapes.

        Missing original keys and shape mismatches are collected and raised together.
        """
        out: dict[str, Any] = {}
        missing: list[str] = []
        wrong: list[str] = []
        for theirs, ours in self.groups.items():
            if theirs not in original:
                missing.append(theirs)
                continue
            tensor = original[theirs]
            op = self.targets[ours[0]].op
            try:
                converted = _load_op(op, tensor, [shapes[k] for k in ours])
            except (RuntimeError, ValueError) as e:
                wrong.append(f"{theirs}: {tuple(tensor.shape)} does not give {[tuple(shapes[k]) for k in ours]} ({e})")
                continue
            for key, value in zip(ours, converted):
                if tuple(value.shape) != tuple(shapes[key]):
                    wrong.append(f"{theirs} -> {key}: expected {tuple(shapes[key])}, got {tuple(value.shape)}")
                out[key] = value
        problems = []
        if missing:
            problems.append(f"missing keys ({len(missing)}): {', '.join(sorted(missing)[:30])}")
        if wrong:
            problems.append(f"wrong shapes ({len(wrong)}): {'; '.join(wrong[:20])}")
        if problems:
            raise ConversionError(f"{source} does not fit the model:\n  " + "\n  ".join(problems))
        return out

    # -- diffusers -> original ---------------------------------------------------------------
    def to_original(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Convert the model's state dict to original-layout keys (the inverse of `to_model`)."""
        out = {}
        for theirs, ours in self.groups.items():
            op = self.targets[ours[0]].op
            out[theirs] = _save_op(op, [state_dict[k] for k in ours])
        return out


# -- transforms ----------------------------------------------------------------------------
# Tensors here may also be quantised GGUF weights (`diffblocks.models.single_file.gguf.QuantTensor`):
# those implement ``split_rows``/``swap_halves``/``reshape`` on whole rows, which is all the
# transforms need, since quantisation blocks never cross a row.
def _load_op(op: str, tensor: Any, shapes: list[torch.Size]) -> list[Any]:
    if op == "part":
        sizes = [s[0] for s in shapes]
        if sum(sizes) != tensor.shape[0]:
            raise ValueError(f"parts {sizes} do not add up to {tensor.shape[0]}")
        if hasattr(tensor, "split_rows"):
            return tensor.split_rows(sizes)
        return list(torch.split(tensor, sizes, dim=0))
    if op == "swap":
        if hasattr(tensor, "swap_halves"):
            return [tensor.swap_halves()]
        first, second = tensor.chunk(2, dim=0)
        return [torch.cat([second, first], dim=0)]
    if op == "conv1x1":
        return [tensor.reshape(shapes[0])]
    if op == "transpose":
        return [tensor.T.contiguous()]
    return [tensor]


def _save_op(op: str, tensors: list[torch.Tensor]) -> torch.Tensor:
    if op == "part":
        return torch.cat(tensors, dim=0)
    (tensor,) = tensors
    if op == "swap":
        first, second = tensor.chunk(2, dim=0)
        return torch.cat([second, first], dim=0)
    if op == "conv1x1":
        return tensor.reshape(*tensor.shape, 1, 1) if tensor.ndim == 2 else tensor
    if op == "transpose":
        return tensor.T.contiguous()
    return tensor
