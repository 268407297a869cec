"""A fast path for loading allow-listed transformers text encoders.

``PreTrainedModel.from_pretrained`` spends most of its time on a tiny text encoder in fixed
costs: the first call in a process compiles about a thousand regular expressions for
checkpoint key conversions (0.1-0.4 s on our CPU box), then it renames and re-checks every
key. For the few encoder classes diffusion pipelines use, a checkpoint saved by a current
transformers has exactly the model's keys, so we do what we do for our own models: build
on the ``meta`` device, read the safetensors, ``load_state_dict(assign=True)``.

Anything unexpected (sharded or pickled weights, an unexpected key, a tensor left on ``meta``
that we cannot rebuild) returns None, and the caller falls back to ``from_pretrained``: the
fast path may only be faster, never different. A checkpoint that lacks some of the model's
weights is refused (:class:`MissingWeightsError`) rather than handed to ``from_pretrained``,
which would initialise them at random and load silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["FAST_CLASSES", "MissingWeightsError", "load_text_encoder_fast"]

FAST_CLASSES = frozenset({"CLIPTextModel", "CLIPTextModelWithProjection", "T5EncoderModel", "UMT5EncoderModel"})


class MissingWeightsError(ValueError):
    """A weight file (or folder) that lacks some of the model's weights (``.missing``: their names)."""

    def __init__(self, weights: Path, missing: list[str]) -> None:
        self.weights = weights
        self.missing = missing
        shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        super().__init__(f"'{weights}' lacks {len(missing)} weight(s) of the model: {shown}")


def _weights_file(folder: Path, variant: str | None) -> Path | None:
    name = f"model.{variant}.safetensors" if variant else "model.safetensors"
    path = folder / name
    sharded = any(folder.glob("model*.safetensors.index*.json"))
    return path if path.is_file() and not sharded else None


def _rebuild_position_ids(model: torch.nn.Module) -> bool:
    """Recreate non-persistent ``position_ids`` buffers (``arange``), the only ones CLIP leaves on meta."""
    for module_name, module in model.named_modules():
        for name, buf in list(module.named_buffers(recurse=False)):
            if buf.is_meta:
                if name != "position_ids":
                    return False
                ids = torch.arange(buf.shape[-1], dtype=buf.dtype).expand(buf.shape).contiguous()
                module.register_buffer(name, ids, persistent=False)
    return True


def load_text_encoder_fast(
    cls: type, root: str | Path, subfolder: str | None, torch_dtype: torch.dtype | None, variant: str | None
) -> Any | None:
    """The model loaded by meta construction + assignment, or None when the fast path does not apply."""
    from safetensors.torch import load_file

    if cls.__name__ not in FAST_CLASSES or cls.__module__.split(".")[0] != "transformers":
        return None
    folder = Path(root) / (subfolder or "")
    weights = _weights_file(folder, variant)
    if weights is None or not (folder / "config.json").is_file():
        return None
    half = torch_dtype in (torch.float16, torch.bfloat16)
    if half and (getattr(cls, "_keep_in_fp32_modules", None) or getattr(cls, "_keep_in_fp32_modules_strict", None)):
        return None  # transformers keeps some layers (T5's ``wo``) in fp32: its loader knows which
    config = cls.config_class.from_pretrained(str(folder))
    if torch_dtype is not None:
        config.dtype = torch_dtype
    with torch.device("meta"):
        model = cls(config)
    state = load_file(str(weights))
    if torch_dtype is not None:
        state = {k: v.to(torch_dtype) if v.is_floating_point() else v for k, v in state.items()}
    # Checkpoints from older transformers still carry position_ids as a persistent buffer.
    state = {k: v for k, v in state.items() if not k.endswith("embeddings.position_ids")}
    result = model.load_state_dict(state, strict=False, assign=True)
    tied = getattr(model, "_tied_weights_keys", None) or {}
    tied_targets = set(tied) if isinstance(tied, dict) else set(tied)
    missing = sorted(set(result.missing_keys) - tied_targets)
    if missing:
        raise MissingWeightsError(weights, missing)
    if result.unexpected_keys:
        return None
    if result.missing_keys:
        model.tie_weights()
    if not _rebuild_position_ids(model):
        return None
    if any(p.is_meta for p in model.parameters()):
        return None
    return model.eval()
