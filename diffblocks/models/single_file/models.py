"""``Model.from_single_file`` / ``Model.save_single_file`` for our three diffusers models.

Loading: recognise the file, find the model's keys in it (a UNet inside a whole SD checkpoint
is found under ``model.diffusion_model.``), pick the config (``config=`` > the config we
embed in files we write > inferred from shapes), build on ``meta``, map keys through the
model's table, assign. Saving writes the original layout that other tools read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file

from diffblocks.models.loading import gc_paused, skip_meta_init
from diffblocks.models.single_file.checkpoint import Checkpoint, CheckpointError
# Shared with gguf.py; the public ones stay importable from here too (__all__).
from diffblocks.models.single_file.convert import (CONFIG_METADATA, MODEL_KINDS, find_prefix, inferred_config,
                                                   key_map, original_state_dict, read_config)
from diffblocks.models.single_file.gguf import model_from_gguf
from diffblocks.models.single_file.table import KeyMap

if TYPE_CHECKING:
    from diffblocks.models.modeling import Model

__all__ = ["MODEL_KINDS", "model_from_single_file", "save_model_single_file", "key_map", "find_prefix",
           "read_config", "CONFIG_METADATA", "original_state_dict", "write_safetensors"]

#: keys some original files carry that no model uses
_IGNORED = ("loss.", "position_ids", "model_ema.")


def model_from_single_file(
    cls: type[Model],
    path: str | os.PathLike[str],
    config: Any = None,
    *,
    subfolder: str | None = None,
    torch_dtype: torch.dtype | None = None,
    allow_pickle: bool = False,
    checkpoint: Checkpoint | None = None,
) -> Model:
    """Load ``cls`` from an original-layout file (see ``Model.from_single_file``)."""
    path = Path(path)
    if path.suffix.lower() == ".gguf":
        return model_from_gguf(cls, path, config, subfolder=subfolder, compute_dtype=torch_dtype)
    ckpt = checkpoint or Checkpoint(path, allow_pickle=allow_pickle)
    ckpt.check_not_lora(f"a {cls.__name__} checkpoint")
    prefix = find_prefix(cls, ckpt, path)
    cfg = read_config(config, cls, subfolder) if config is not None else cls.config_class.from_dict(
        inferred_config(cls, ckpt, prefix))
    dtype = torch_dtype or torch.get_default_dtype()
    with gc_paused():
        with skip_meta_init():
            model = cls(cfg)
        mapping = key_map(model, prefix)
        shapes = {k: v.shape for k, v in model.state_dict().items()}
        state = mapping.to_model(ckpt, shapes, source=f"{path} (as {cls.__name__})")
        _check_leftovers(ckpt, mapping, prefix, path, cls)
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        model.assign_weights(state, source=str(path))
    return model.eval()


def _check_leftovers(ckpt: Checkpoint, mapping: KeyMap, prefix: str, path: Path, cls: type[Model]) -> None:
    """Keys under the model's prefix that the mapping did not use mean the config does not fit.

    With an empty prefix the file holds only this model, so every key of it counts.
    """
    used = mapping.original_keys
    left = sorted(k for k in ckpt if k.startswith(prefix) and k not in used and not any(s in k for s in _IGNORED))
    if left:
        raise CheckpointError(
            f"{path}: {len(left)} key(s) the {cls.__name__} config has no place for "
            f"(does config= fit the file?): {', '.join(left[:20])}"
        )


def save_model_single_file(model: Model, path: str | os.PathLike[str], *, prefix: str | None = None) -> Path:
    """Write ``model`` as one safetensors file in the original layout (with its config in the
    metadata, so our loader needs no ``config=`` to read it back)."""
    tensors = {k: v.contiguous() for k, v in original_state_dict(model, prefix).items()}
    metadata = {"format": "pt", CONFIG_METADATA: json.dumps(model.config.to_dict(), sort_keys=True)}
    return write_safetensors(tensors, path, metadata)


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike[str], metadata: dict[str, str]) -> Path:
    """Write through a temporary sibling and a rename (streamed: a multi-GB checkpoint is never
    held twice in memory, and a failed write never leaves a half file under the real name)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
