"""What a checkpoint holds, recognised from its keys and shapes, and the configs those imply.

`detect` names the family of a file (``sd1``, ``sd2``, ``sdxl``, ``flux``) or the single
component it holds (``unet``, ``vae``), with the prefix its keys carry. The ``*_config``
functions start from the family's standard diffusers config (bundled in
``diffblocks/assets/single_file``) and overwrite every value the shapes determine: channels,
levels, layers, transformer depths, context and embedding sizes. Head counts cannot be read
from shapes (heads x head_dim is all a weight shows); they follow the standard rule of each
family (SD 1.x: 8 heads; SD 2.x / SDXL: 64-wide heads), and ``config=`` overrides everything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from diffblocks.models.single_file.keys_flux import FLUX_PREFIXES
from diffblocks.models.single_file.keys_unet import UNET_PREFIX
from diffblocks.models.single_file.keys_vae import VAE_PREFIX

__all__ = ["Detected", "detect", "standard_family", "unet_config", "vae_config", "flux_config", "FAMILIES"]

FAMILIES = ("sd1", "sd2", "sdxl")
ASSETS = Path(__file__).resolve().parents[2] / "assets" / "single_file"
Shape = Callable[[str], "tuple[int, ...] | None"]

#: a key that only the family's text encoder has (checked in this order)
TEXT_ENCODER_MARKS = {
    "sdxl": "conditioner.embedders.1.model.positional_embedding",
    "sd2": "cond_stage_model.model.token_embedding.weight",
    "sd1": "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
}


@dataclass(frozen=True)
class Detected:
    """``kind``: a family (whole pipeline) or one component; ``prefix``: before the model's keys."""

    kind: str
    prefix: str = ""

    @property
    def is_pipeline(self) -> bool:
        return self.kind in FAMILIES


@cache
def standard_family(family: str) -> dict[str, Any]:
    """The bundled standard configs of a family (``sd1``, ``sd2``, ``sdxl``)."""
    if family not in FAMILIES:
        raise ValueError(f"no standard configs for {family!r} (known: {', '.join(FAMILIES)})")
    return json.loads((ASSETS / f"{family}.json").read_text())


def detect(keys: list[str] | set[str], shape: Shape) -> Detected | None:
    """The family or component of a checkpoint, or None when nothing is recognised."""
    keys = set(keys)
    for family, mark in TEXT_ENCODER_MARKS.items():
        if mark in keys and f"{UNET_PREFIX}input_blocks.0.0.weight" in keys:
            return Detected(family, UNET_PREFIX)
    for prefix in FLUX_PREFIXES:
        if f"{prefix}double_blocks.0.img_attn.qkv.weight" in keys:
            return Detected("flux", prefix)
    for prefix in (UNET_PREFIX, ""):
        if f"{prefix}input_blocks.0.0.weight" in keys:
            return Detected("unet", prefix)
    for prefix in (VAE_PREFIX, ""):
        if f"{prefix}encoder.conv_in.weight" in keys and f"{prefix}decoder.conv_out.weight" in keys:
            return Detected("vae", prefix)
    return None


def _count(keys: set[str], pattern: str) -> int:
    """How many distinct values the single ``(\\d+)`` group of ``pattern`` takes among ``keys``."""
    rx = re.compile(pattern)
    return len({m.group(1) for k in keys if (m := rx.match(k))})


def unet_family(keys: set[str], shape: Shape, prefix: str) -> str:
    """sd1 / sd2 / sdxl from the UNet alone: SDXL has a text-time embedding, SD 2 a 1024 context."""
    if f"{prefix}label_emb.0.0.weight" in keys:
        return "sdxl"
    for key in sorted(keys):
        if key.startswith(prefix) and key.endswith("attn2.to_k.weight"):
            return "sd2" if shape(key)[1] == 1024 else "sd1"  # type: ignore[index]
    return "sd1"


def unet_config(keys: set[str], shape: Shape, prefix: str, family: str | None = None) -> dict[str, Any]:
    """A diffusers UNet config for the UNet under ``prefix``: the family's standard config with
    every shape-determined value read from the file."""
    p = prefix
    family = family or unet_family(keys, shape, p)
    cfg = dict(standard_family(family)["components"]["unet"])
    n_input = _count(keys, re.escape(f"{p}input_blocks.") + r"(\d+)\.")
    downsamplers = sorted(int(m.group(1)) for k in keys if (m := re.match(re.escape(f"{p}input_blocks.") + r"(\d+)\.0\.op\.weight", k)))
    levels = len(downsamplers) + 1
    layers = (n_input - 1 - len(downsamplers)) // levels
    channels, down_types, depths = [], [], []
    for i in range(levels):
        first = 1 + i * (layers + 1)
        channels.append(shape(f"{p}input_blocks.{first}.0.out_layers.3.weight")[0])  # type: ignore[index]
        attn = f"{p}input_blocks.{first}.1."
        depth = _count(keys, re.escape(attn) + r"transformer_blocks\.(\d+)\.")
        down_types.append("CrossAttnDownBlock2D" if depth else "DownBlock2D")
        depths.append(depth or 1)
    cross_key = next(k for k in sorted(keys) if k.startswith(p) and k.endswith("attn2.to_k.weight"))
    proj_in = next(k for k in sorted(keys) if k.startswith(p) and k.endswith("proj_in.weight"))
    cross_dim = shape(cross_key)[1]  # type: ignore[index]
    cfg.update(
        in_channels=shape(f"{p}input_blocks.0.0.weight")[1],  # type: ignore[index]
        out_channels=shape(f"{p}out.2.weight")[0],  # type: ignore[index]
        block_out_channels=channels,
        layers_per_block=layers,
        down_block_types=down_types,
        up_block_types=[t.replace("Down", "Up") for t in reversed(down_types)],
        cross_attention_dim=cross_dim,
        use_linear_projection=len(shape(proj_in)) == 2,  # type: ignore[arg-type]
        transformer_layers_per_block=depths if family == "sdxl" else 1,
        # SD 1.x: 8 heads everywhere; SD 2.x / SDXL: heads of width 64 (see module docstring)
        attention_head_dim=8 if cross_dim == 768 and family == "sd1" else [max(c // 64, 1) for c in channels],
    )
    if family == "sdxl":
        cfg["projection_class_embeddings_input_dim"] = shape(f"{p}label_emb.0.0.weight")[1]  # type: ignore[index]
    return cfg


def vae_config(keys: set[str], shape: Shape, prefix: str, family: str = "sd1") -> dict[str, Any]:
    """A diffusers AutoencoderKL config for the VAE under ``prefix``."""
    p = prefix
    cfg = dict(standard_family(family)["components"]["vae"])
    levels = _count(keys, re.escape(f"{p}encoder.down.") + r"(\d+)\.")
    layers = _count(keys, re.escape(f"{p}encoder.down.0.block.") + r"(\d+)\.")
    channels = [shape(f"{p}encoder.down.{i}.block.0.conv2.weight")[0] for i in range(levels)]  # type: ignore[index]
    latent = shape(f"{p}decoder.conv_in.weight")[1]  # type: ignore[index]
    cfg.update(
        in_channels=shape(f"{p}encoder.conv_in.weight")[1],  # type: ignore[index]
        out_channels=shape(f"{p}decoder.conv_out.weight")[0],  # type: ignore[index]
        block_out_channels=channels,
        layers_per_block=layers,
        latent_channels=latent,
        down_block_types=["DownEncoderBlock2D"] * levels,
        up_block_types=["UpDecoderBlock2D"] * levels,
        use_quant_conv=f"{p}quant_conv.weight" in keys,
        use_post_quant_conv=f"{p}post_quant_conv.weight" in keys,
    )
    if latent == 16 and not cfg["use_quant_conv"]:  # the Flux VAE: its own latent normalisation
        cfg.update(scaling_factor=0.3611, shift_factor=0.1159, sample_size=1024)
    return cfg


def flux_config(keys: set[str], shape: Shape, prefix: str) -> dict[str, Any]:
    """A diffusers FluxTransformer2DModel config for BFL keys under ``prefix``."""
    p = prefix
    dim, in_channels = shape(f"{p}img_in.weight")  # type: ignore[misc]
    head_dim = shape(f"{p}double_blocks.0.img_attn.norm.query_norm.scale")[0]  # type: ignore[index]
    out = shape(f"{p}final_layer.linear.weight")[0]  # type: ignore[index]
    if head_dim != 128:
        raise ValueError(
            f"Flux attention head width {head_dim} is not the standard 128, so the RoPE axes cannot be "
            "inferred; pass config= (a diffusers transformer folder)"
        )
    return {
        "_class_name": "FluxTransformer2DModel",
        "patch_size": 1,
        "in_channels": in_channels,
        "out_channels": out if out != in_channels else None,
        "num_layers": _count(keys, re.escape(f"{p}double_blocks.") + r"(\d+)\."),
        "num_single_layers": _count(keys, re.escape(f"{p}single_blocks.") + r"(\d+)\."),
        "attention_head_dim": head_dim,
        "num_attention_heads": dim // head_dim,
        "joint_attention_dim": shape(f"{p}txt_in.weight")[1],  # type: ignore[index]
        "pooled_projection_dim": shape(f"{p}vector_in.in_layer.weight")[1],  # type: ignore[index]
        "guidance_embeds": f"{p}guidance_in.in_layer.weight" in keys,
        "axes_dims_rope": [16, 56, 56],
    }
