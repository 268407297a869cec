"""Between one of our models and its original-layout keys: which kind a class is, where its
keys start in a file, which config to build, and the key mapping both ways.

Shared by the safetensors/pickle loader and writer (``models.py``) and GGUF (``gguf.py``).
The model classes are only named in annotations: a class or instance comes in as an argument,
so nothing here imports the model modules.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from diffblocks.models.loading import CONFIG_NAME
from diffblocks.models.single_file.checkpoint import Checkpoint, CheckpointError
from diffblocks.models.single_file.detect import detect, flux_config, unet_config, vae_config
from diffblocks.models.single_file.keys_flux import FLUX_PREFIXES, flux_rows
from diffblocks.models.single_file.keys_unet import UNET_PREFIX, unet_rows
from diffblocks.models.single_file.keys_vae import VAE_PREFIX, vae_rows
from diffblocks.models.single_file.table import KeyMap, Row

if TYPE_CHECKING:
    from diffblocks.models.modeling import Model, ModelConfig

__all__ = ["CONFIG_METADATA", "MODEL_KINDS", "find_prefix", "inferred_config", "key_map", "model_kind",
           "original_state_dict", "read_config"]

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


def model_kind(cls: type[Model]) -> tuple[str, tuple[str, ...], str, Callable[[Any], list[Row]]]:
    """``cls``'s row of `MODEL_KINDS`, or a TypeError naming the classes that have a file format."""
    try:
        return MODEL_KINDS[cls.__name__]
    except KeyError:
        raise TypeError(f"{cls.__name__} has no single-file format (known: {', '.join(MODEL_KINDS)})") from None


def key_map(model: Model, prefix: str | None = None) -> KeyMap:
    """The key mapping of ``model`` (its table applied to its own keys)."""
    kind, prefixes, _, rows = model_kind(type(model))
    return KeyMap(rows(model.config), model.state_dict().keys(), prefixes[0] if prefix is None else prefix)


def find_prefix(cls: type[Model], ckpt: Mapping[str, Any], path: Path) -> str:
    """Where ``cls``'s keys start in the file, or one error saying what the file holds instead."""
    kind, prefixes, _, _ = model_kind(cls)
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
    candidates = [folder / subfolder] if subfolder else [folder, folder / model_kind(cls)[2]]
    for candidate in candidates:
        if (candidate / CONFIG_NAME).is_file():
            return cls.load_config(candidate)
    raise FileNotFoundError(f"config={folder}: no {CONFIG_NAME} in {', '.join(map(str, candidates))}")


def inferred_config(cls: type[Model], ckpt: Checkpoint, prefix: str) -> dict[str, Any]:
    """The diffusers config dict to build ``cls`` with when no ``config=`` is given: the one our
    writer embedded in the file, else one inferred from the shapes under ``prefix``."""
    embedded = ckpt.metadata.get(CONFIG_METADATA)
    if embedded:
        data = json.loads(embedded)
        if data.get("_class_name") == cls.config_class.class_name:
            return data
    kind = model_kind(cls)[0]
    keys = set(ckpt.keys())
    if kind == "unet":
        return unet_config(keys, ckpt.shape, prefix)
    if kind == "vae":
        unet_family = detect(keys, ckpt.shape)
        family = unet_family.kind if unet_family and unet_family.is_pipeline else "sd1"
        return vae_config(keys, ckpt.shape, prefix, family)
    return flux_config(keys, ckpt.shape, prefix)


def original_state_dict(model: Model, prefix: str | None = None) -> dict[str, torch.Tensor]:
    """The model's weights under original-layout keys (what ``save_single_file`` writes)."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}  # channels-last convs too
    return key_map(model, prefix).to_original(state)
