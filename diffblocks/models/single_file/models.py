"""``Model.from_single_file`` / ``Model.save_single_file`` for our three diffusers models.

Loading: recognise the file, find the model's keys in it (a UNet inside a whole SD checkpoint
is found under ``model.diffusion_model.``), pick the config (``config=`` > the config we
embed in files we write > inferred from shapes), build on ``meta``, map keys through the
model's table, assign. Saving writes the original layout that other tools read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file

from diffblocks.models.modeling import CONFIG_NAME, Model, gc_paused, skip_meta_init
from diffblocks.models.single_file.checkpoint import Checkpoint, CheckpointError
from diffblocks.models.single_file.detect import detect, flux_config, unet_config, vae_config
from diffblocks.models.single_file.keys_flux import FLUX_PREFIXES, flux_rows
from diffblocks.models.single_file.keys_unet import UNET_PREFIX, unet_rows
from diffblocks.models.single_file.keys_vae import VAE_PREFIX, vae_rows
from diffblocks.models.single_file.table import KeyMap, Row

if TYPE_CHECKING:
    from diffblocks.models.modeling import ModelConfig

__all__ = ["MODEL_KINDS", "model_from_single_file", "save_model_single_file", "key_map", "find_prefix",
           "read_config", "CONFIG_METADATA", "original_state_dict", "write_safetensors"]

#: metadata key holding the diffusers config in files we write (read back before inferring)
CONFIG_METADATA = "diffblocks_config"

#: our class name -> (kind, prefixes the file may put before its keys, default subfolder, table)
MODEL_KINDS: dict[str, tuple[str, tuple[str, ...], str, Callable[[Any], list[Row]]]] = {
    "UNet2DConditionModel": ("unet", (UNET_PREFIX, ""), "unet", unet_rows),
    "AutoencoderKL": ("vae", (VAE_PREFIX, ""), "vae", vae_rows),
    "FluxTransformer2DModel": ("flux", FLUX_PREFIXES, "transformer", flux_rows),
}
#: the marker key (after the prefix) that says a model of that kind is in the file
_MARKERS = {"unet": "input_blocks.0.0.weight", "vae": "encoder.conv_in.weight", "flux": "double_blocks.0.img_attn.qkv.weight"}
#: keys some original files carry that no model uses
_IGNORED = ("loss.", "position_ids", "model_ema.")


def _kind(cls: type[Model]) -> tuple[str, tuple[str, ...], str, Callable[[Any], list[Row]]]:
    try:
        return MODEL_KINDS[cls.__name__]
    except KeyError:
        raise TypeError(f"{cls.__name__} has no single-file format (known: {', '.join(MODEL_KINDS)})") from None


def key_map(model: Model, prefix: str | None = None) -> KeyMap:
    """The key mapping of ``model`` (its table applied to its own keys)."""
    kind, prefixes, _, rows = _kind(type(model))
    return KeyMap(rows(model.config), model.state_dict().keys(), prefixes[0] if prefix is None else prefix)


def find_prefix(cls: type[Model], ckpt: Mapping[str, Any], path: Path) -> str:
    """Where ``cls``'s keys start in the file, or one error saying what the file holds instead."""
    kind, prefixes, _, _ = _kind(cls)
    for prefix in prefixes:
        if prefix + _MARKERS[kind] in ckpt:
            return prefix
    keys = list(ckpt)
    found = detect(keys, ckpt.shape)  # type: ignore[attr-defined]
    what = f"a {found.kind} checkpoint" if found else f"{len(keys)} unrecognised keys (first: {', '.join(keys[:4])})"
    expected = " or ".join(repr(p + _MARKERS[kind]) for p in prefixes)
    raise CheckpointError(f"{path}: holds {what}; {cls.__name__} expected keys like {expected}")


def read_config(config: Any, cls: type[Model], subfolder: str | None) -> ModelConfig:
    """``config=``: a config object, a diffusers config dict, a component folder, or a pipeline
    folder (with ``subfolder``, or the kind's usual subfolder such as ``unet``)."""
    if isinstance(config, cls.config_class):
        return config
    if isinstance(config, Mapping):
        return cls.config_class.from_dict(config)
    folder = Path(config)
    candidates = [folder / subfolder] if subfolder else [folder, folder / _kind(cls)[2]]
    for candidate in candidates:
        if (candidate / CONFIG_NAME).is_file():
            return cls.load_config(candidate)
    raise FileNotFoundError(f"config={folder}: no {CONFIG_NAME} in {', '.join(map(str, candidates))}")


def _inferred_config(cls: type[Model], ckpt: Checkpoint, prefix: str) -> dict[str, Any]:
    embedded = ckpt.metadata.get(CONFIG_METADATA)
    if embedded:
        data = json.loads(embedded)
        if data.get("_class_name") == cls.config_class.class_name:
            return data
    kind = _kind(cls)[0]
    keys = set(ckpt.keys())
    if kind == "unet":
        return unet_config(keys, ckpt.shape, prefix)
    if kind == "vae":
        unet_family = detect(keys, ckpt.shape)
        family = unet_family.kind if unet_family and unet_family.is_pipeline else "sd1"
        return vae_config(keys, ckpt.shape, prefix, family)
    return flux_config(keys, ckpt.shape, prefix)


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
        from diffblocks.models.single_file.gguf import model_from_gguf

        return model_from_gguf(cls, path, config, subfolder=subfolder, compute_dtype=torch_dtype)
    ckpt = checkpoint or Checkpoint(path, allow_pickle=allow_pickle)
    ckpt.check_not_lora(f"a {cls.__name__} checkpoint")
    prefix = find_prefix(cls, ckpt, path)
    cfg = read_config(config, cls, subfolder) if config is not None else cls.config_class.from_dict(
        _inferred_config(cls, ckpt, prefix))
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


def original_state_dict(model: Model, prefix: str | None = None) -> dict[str, torch.Tensor]:
    """The model's weights under original-layout keys (what ``save_single_file`` writes)."""
    state = {k: v.detach() for k, v in model.state_dict().items()}
    return key_map(model, prefix).to_original(state)


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
