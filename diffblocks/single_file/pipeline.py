"""Whole-pipeline single files: SD 1.x, SD 2.x and SDXL checkpoints in one file, both ways.

Reading: the family is recognised from the text encoder's keys; each component is read from
its prefix (``model.diffusion_model.``, ``first_stage_model.``, ``cond_stage_model.``,
``conditioner.embedders.N.``). Configs come from ``config=`` (a diffusers pipeline folder) or,
offline and without one, from the family's bundled standard configs with the shape-determined
values read from the file; the tokenizers are built from the bundled CLIP vocabulary.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffblocks.components.fast_transformers import _rebuild_position_ids
from diffblocks.models.autoencoder_kl import AutoencoderKL
from diffblocks.models.unet_2d_condition import UNet2DConditionModel
from diffblocks.models.single_file.checkpoint import Checkpoint, CheckpointError
from diffblocks.models.single_file.detect import FAMILIES, detect, standard_family, unet_config, vae_config
from diffblocks.single_file.keys_clip import ENCODER_PREFIXES, hf_clip_rows, open_clip_rows
from diffblocks.models.single_file.keys_unet import UNET_PREFIX
from diffblocks.models.single_file.keys_vae import VAE_PREFIX
from diffblocks.models.kernels import use_cpu_kernels
from diffblocks.models.single_file.models import model_from_single_file, original_state_dict, write_safetensors
from diffblocks.models.single_file.table import KeyMap, Row
from diffblocks.single_file.tokenizer import clip_tokenizer

__all__ = ["SingleFileParts", "read_pipeline_file", "write_pipeline_file", "PRESET_FOR_FAMILY"]

PRESET_FOR_FAMILY = {"sd1": "sd15", "sd2": "sd15", "sdxl": "sdxl"}
#: metadata keys of Stability's model spec that we read and write
PREDICTION_METADATA = "modelspec.prediction_type"


@dataclass
class SingleFileParts:
    """What a pipeline file gives: the family, loaded components, index config for the graph."""

    family: str
    components: dict[str, Any]
    index_config: dict[str, Any]
    preset: str


# -- text encoders ---------------------------------------------------------------------------
def _encoder_rows(layout: str, config: Any, keys: Any) -> list:
    ours = "text_model." if any(k.startswith("text_model.") for k in keys) else ""
    return hf_clip_rows(ours) if layout == "hf" else open_clip_rows(config.num_hidden_layers, ours)


def _encoder_config(ckpt: Checkpoint, family: str, name: str, folder: Path | None) -> Any:
    from transformers import CLIPTextConfig

    if folder is not None:
        return CLIPTextConfig.from_pretrained(str(folder / name))
    prefix, layout = ENCODER_PREFIXES[(family, name)]
    data = dict(standard_family(family)["components"][name])
    # Widths and depth from the shapes; heads by the standard 64-wide rule (shapes cannot tell).
    if layout == "hf":
        base = prefix + ("text_model." if prefix + "text_model.embeddings.token_embedding.weight" in ckpt else "")
        vocab, hidden = ckpt.shape(base + "embeddings.token_embedding.weight")  # type: ignore[misc]
        layers = _count_layers(ckpt, base + "encoder.layers.")
        inner = ckpt.shape(base + "encoder.layers.0.mlp.fc1.weight")[0]  # type: ignore[index]
    else:
        vocab, hidden = ckpt.shape(prefix + "token_embedding.weight")  # type: ignore[misc]
        layers = _count_layers(ckpt, prefix + "transformer.resblocks.")
        if family == "sd2" and layers == 24:  # the full OpenCLIP-H; SD 2 conditions on layer 23's output
            layers = 23
        inner = ckpt.shape(prefix + "transformer.resblocks.0.mlp.c_fc.weight")[0]  # type: ignore[index]
        if name == "text_encoder_2":
            data["projection_dim"] = ckpt.shape(prefix + "text_projection")[1]  # type: ignore[index]
    data.update(vocab_size=vocab, hidden_size=hidden, intermediate_size=inner, num_hidden_layers=layers,
                num_attention_heads=max(hidden // 64, 1))
    return CLIPTextConfig.from_dict({k: v for k, v in data.items() if k != "architectures"})


def load_text_encoder(ckpt: Checkpoint, family: str, name: str, config: Any, dtype: torch.dtype) -> Any:
    """A transformers CLIP text encoder read from its place in a pipeline file."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if name == "text_encoder_2" else CLIPTextModel
    prefix, layout = ENCODER_PREFIXES[(family, name)]
    with torch.device("meta"):
        model = cls(config)
    state = model.state_dict()
    keys = [k for k in state if not k.endswith("position_ids")]
    rows = _encoder_rows(layout, config, keys)
    if layout == "hf" and prefix + "text_model.embeddings.token_embedding.weight" not in ckpt:
        rows = [Row(rows[0].ours, "")]  # older files: no ``text_model.`` level
    mapping = KeyMap(rows, keys, prefix)
    tensors = mapping.to_model(ckpt, {k: state[k].shape for k in keys}, source=f"{ckpt.path} ({name})")
    tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    model.load_state_dict(tensors, strict=False, assign=True)
    if not _rebuild_position_ids(model) or any(p.is_meta for p in model.parameters()):
        raise CheckpointError(f"{ckpt.path}: {name} left tensors without weights")
    return model.eval()


def text_encoder_state(model: Any, family: str, name: str) -> dict[str, torch.Tensor]:
    prefix, layout = ENCODER_PREFIXES[(family, name)]
    state = {k: v.detach() for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    return KeyMap(_encoder_rows(layout, model.config, state), state.keys(), prefix).to_original(state)


def _count_layers(ckpt: Checkpoint, prefix: str) -> int:
    return len({k[len(prefix):].split(".", 1)[0] for k in ckpt if k.startswith(prefix)})


# -- reading ---------------------------------------------------------------------------------
def _folder_index(folder: Path) -> dict[str, Any]:
    index = folder / "model_index.json"
    return json.loads(index.read_text()) if index.is_file() else {}


def _scheduler(family: str, folder: Path | None, prediction_type: str | None) -> Any:
    from diffblocks.schedulers import SCHEDULER_CLASSES

    if folder is not None and (folder / "scheduler" / "scheduler_config.json").is_file():
        config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    else:
        config = dict(standard_family(family)["components"]["scheduler"])
    if prediction_type is not None:
        config["prediction_type"] = prediction_type
    return SCHEDULER_CLASSES[config["_class_name"]].from_config(config)


def _tokenizer(family: str, name: str, folder: Path | None) -> Any:
    if folder is not None and (folder / name).is_dir():
        from transformers import CLIPTokenizer

        return CLIPTokenizer.from_pretrained(str(folder / name), model_max_length=77)
    return clip_tokenizer(standard_family(family)[name]["pad_token"])


def _prediction_type(ckpt: Checkpoint, given: str | None) -> str | None:
    """``prediction_type=`` wins; else Stability's model-spec metadata when the file has it."""
    if given is not None:
        return given
    value = ckpt.metadata.get(PREDICTION_METADATA)
    return {"v": "v_prediction", "epsilon": "epsilon", "v_prediction": "v_prediction"}.get(value or "")


def read_pipeline_file(
    path: str | os.PathLike[str] | Checkpoint,
    config: str | os.PathLike[str] | None = None,
    *,
    torch_dtype: torch.dtype | None = None,
    allow_pickle: bool = False,
    prediction_type: str | None = None,
) -> SingleFileParts:
    """Load every component of an SD 1.x / 2.x / SDXL single file.

    SD 2.x files do not say whether they predict v (768-v models) or noise (512 base): the
    standard config says v; pass ``prediction_type="epsilon"`` for a 2.x base model (a file
    with Stability's ``modelspec.prediction_type`` metadata says it itself).
    """
    ckpt = path if isinstance(path, Checkpoint) else Checkpoint(path, allow_pickle=allow_pickle)
    path = ckpt.path
    ckpt.check_not_lora("a Stable Diffusion checkpoint")
    found = detect(list(ckpt), ckpt.shape)
    if found is None or not found.is_pipeline:
        what = f"only a {found.kind} model" if found else f"no known layout (first keys: {', '.join(list(ckpt)[:4])})"
        hint = {
            "flux": "; pass config=<a Flux pipeline folder> for the other components, or load it with "
                    "FluxTransformer2DModel.from_single_file",
            "unet": "; pass config=<a pipeline folder> for the other components, or load it with "
                    "UNet2DConditionModel.from_single_file",
            "vae": "; pass config=<a pipeline folder> for the other components, or load it with "
                   "AutoencoderKL.from_single_file",
        }.get(found.kind if found else "", "")
        raise CheckpointError(
            f"{path}: holds {what}, expected a whole SD 1.x / 2.x / SDXL checkpoint "
            f"(UNet under {UNET_PREFIX!r}, VAE under {VAE_PREFIX!r}, text encoders){hint}"
        )
    family = found.kind
    folder = Path(config) if config is not None else None
    dtype = torch_dtype or torch.get_default_dtype()
    keys = set(ckpt)
    if folder is not None:
        unet_cfg: Any = folder
        vae_cfg: Any = folder
    else:
        unet_cfg = unet_config(keys, ckpt.shape, UNET_PREFIX, family)
        vae_cfg = vae_config(keys, ckpt.shape, VAE_PREFIX, family)
    components: dict[str, Any] = {
        "unet": model_from_single_file(UNet2DConditionModel, path, unet_cfg, torch_dtype=dtype, checkpoint=ckpt),
        "vae": model_from_single_file(AutoencoderKL, path, vae_cfg, torch_dtype=dtype, checkpoint=ckpt),
        "scheduler": _scheduler(family, folder, _prediction_type(ckpt, prediction_type)),
    }
    for name in ("text_encoder", "text_encoder_2"):
        if (family, name) in ENCODER_PREFIXES:
            enc_config = _encoder_config(ckpt, family, name, folder)
            components[name] = load_text_encoder(ckpt, family, name, enc_config, dtype)
            components[name.replace("text_encoder", "tokenizer")] = _tokenizer(family, name.replace("text_encoder", "tokenizer"), folder)
    components = {name: use_cpu_kernels(obj) for name, obj in components.items()}  # as the folder loader does
    index = _folder_index(folder) if folder is not None else {}
    index_config = {k: v for k, v in index.items() if not k.startswith("_") and not isinstance(v, list)}
    index_config = index_config or dict(standard_family(family).get("config", {}))
    return SingleFileParts(family, components, index_config, PRESET_FOR_FAMILY[family])


#: single-model kinds -> (pipeline component name, our class name)
COMPONENT_FOR_KIND = {"unet": ("unet", "UNet2DConditionModel"), "vae": ("vae", "AutoencoderKL"),
                      "flux": ("transformer", "FluxTransformer2DModel")}


def single_component(
    path: str | os.PathLike[str], config: str | os.PathLike[str] | None, *, torch_dtype: torch.dtype | None = None,
    allow_pickle: bool = False, **kwargs: Any,
) -> tuple[str, Any] | None:
    """``(component name, model)`` when the file holds one model (a Flux transformer, a UNet, a
    VAE; safetensors or GGUF) that replaces that component of the pipeline in ``config``;
    None for a whole-pipeline file."""
    import diffblocks.models as models

    path = Path(path)
    if path.suffix.lower() == ".gguf":
        from diffblocks.models.single_file.gguf import read_gguf

        ckpt = read_gguf(path)
    else:
        ckpt = Checkpoint(path, allow_pickle=allow_pickle)
    found = detect(list(ckpt), ckpt.shape)
    if found is None or found.is_pipeline or config is None:
        return None  # read_pipeline_file loads it or says what is wrong
    name, class_name = COMPONENT_FOR_KIND[found.kind]
    cls = getattr(models, class_name)
    model = cls.from_single_file(path, config, subfolder=name, torch_dtype=torch_dtype, allow_pickle=allow_pickle, **kwargs)
    return name, use_cpu_kernels(model)


# -- writing ---------------------------------------------------------------------------------
def family_of(components: Mapping[str, Any]) -> str:
    """sdxl with two text encoders; sd2 when the UNet projects attention with linear layers
    (SD 2.x does, SD 1.x uses 1x1 convolutions); else sd1."""
    if "text_encoder_2" in components:
        return "sdxl"
    return "sd2" if components["unet"].config.use_linear_projection else "sd1"


def write_pipeline_file(
    components: Mapping[str, Any], path: str | os.PathLike[str], *, family: str | None = None
) -> Path:
    """Write UNet, VAE and text encoder(s) as one original-layout safetensors file.

    ``family`` (sd1 / sd2 / sdxl) picks the text-encoder layout; by default `family_of` decides.
    """
    names = [n for n in ("unet", "vae", "text_encoder") if n not in components]
    if names:
        raise ValueError(f"save_single_file needs components {names}; this pipeline has {sorted(components)}")
    family = family or family_of(components)
    tensors: dict[str, torch.Tensor] = {}
    tensors.update(original_state_dict(components["unet"], UNET_PREFIX))
    tensors.update(original_state_dict(components["vae"], VAE_PREFIX))
    for name in ("text_encoder", "text_encoder_2"):
        if (family, name) in ENCODER_PREFIXES and name in components:
            tensors.update(text_encoder_state(components[name], family, name))
    metadata = {"format": "pt"}
    scheduler = components.get("scheduler")
    prediction = getattr(scheduler, "config", {}).get("prediction_type") if scheduler is not None else None
    if prediction:
        metadata[PREDICTION_METADATA] = "v" if prediction == "v_prediction" else prediction
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    return write_safetensors(tensors, path, metadata)


__all__ += ["FAMILIES", "family_of", "load_text_encoder", "text_encoder_state", "single_component"]
