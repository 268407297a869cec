"""Flux LoRAs in the original (Black Forest Labs) layout and kohya's spelling of it.

BFL names the transformer's layers after its own code (``double_blocks.0.img_attn.qkv``) and
fuses layers diffusers keeps apart: ``qkv`` is one linear where diffusers has ``to_q``,
``to_k``, ``to_v``, and a single block's ``linear1`` is q, k, v and the MLP input together.
A low-rank update of a fused layer splits exactly: every part keeps the shared ``down`` and
takes its rows of ``up`` (``delta W = up @ down`` row by row). The final modulation is stored
as (shift, scale) where diffusers' ``norm_out.linear`` gives (scale, shift), so its rows swap.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping

import torch

from diffblocks.adapters.weights import LoraFormatError, LoraWeights

__all__ = ["is_flux_original_layout", "to_diffusers_flux"]

_PREFIXES = ("diffusion_model.", "lora_unet_", "transformer.", "")
_BLOCK = re.compile(r"^(?:diffusion_model\.|lora_unet_|transformer\.)?(double_blocks|single_blocks)[._]\d+[._]")
_GLOBAL = re.compile(r"^(?:diffusion_model\.|lora_unet_)(img_in|txt_in|time_in|vector_in|guidance_in|final_layer)[._]")

#: BFL double-block layer -> diffusers module(s) (several: a fused layer split by output rows).
_DOUBLE = {
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    "img_attn.proj": ("attn.to_out.0",), "txt_attn.proj": ("attn.to_add_out",),
    "img_mlp.0": ("ff.net.0.proj",), "img_mlp.2": ("ff.net.2",),
    "txt_mlp.0": ("ff_context.net.0.proj",), "txt_mlp.2": ("ff_context.net.2",),
    "img_mod.lin": ("norm1.linear",), "txt_mod.lin": ("norm1_context.linear",),
}
_SINGLE = {
    "linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"),
    "linear2": ("proj_out",), "modulation.lin": ("norm.linear",),
}
_GLOBALS = {
    "img_in": "x_embedder", "txt_in": "context_embedder",
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "final_layer.linear": "proj_out", "final_layer.adaLN_modulation.1": "norm_out.linear",
}
_PARTS = {".lora_A.weight": "down", ".lora_B.weight": "up", ".lora_down.weight": "down",
          ".lora_up.weight": "up", ".alpha": "alpha"}


def is_flux_original_layout(keys: list[str]) -> bool:
    """Whether any key names BFL's ``double_blocks`` / ``single_blocks`` (any spelling)."""
    return any(_BLOCK.match(k) or _GLOBAL.match(k) for k in keys)


def _dotted(name: str, table: Mapping[str, object]) -> str | None:
    """kohya spells ``img_attn.qkv`` as ``img_attn_qkv``: find the table entry it spells."""
    if name in table:
        return name
    return next((k for k in table if k.replace(".", "_") == name), None)


def _bfl_target(stem: str) -> tuple[str, tuple[str, ...]] | None:
    """(diffusers module prefix, target names) for one BFL layer stem, or None if unknown."""
    for prefix in _PREFIXES:
        if prefix and stem.startswith(prefix):
            stem = stem[len(prefix):]
            break
    if m := re.match(r"(double_blocks|single_blocks)[._](\d+)[._](.+)$", stem):
        kind, index, layer = m.groups()
        table = _DOUBLE if kind == "double_blocks" else _SINGLE
        ours = "transformer_blocks" if kind == "double_blocks" else "single_transformer_blocks"
        key = _dotted(layer, table)
        return (f"{ours}.{index}", table[key]) if key else None
    key = _dotted(stem, _GLOBALS)
    return ("", (_GLOBALS[key],)) if key else None


def _out_features(module: torch.nn.Module) -> int:
    base = getattr(module, "base_layer", module)
    return int(base.out_features)


def to_diffusers_flux(
    state_dict: Mapping[str, torch.Tensor], modules: Mapping[str, torch.nn.Module], *, source: str,
) -> tuple[dict[str, LoraWeights], dict[str, torch.Tensor]]:
    """(transformer layers by diffusers path, the keys that are not Flux-transformer keys).

    Unknown Flux-layout keys raise :class:`~diffblocks.adapters.formats.LoraFormatError`.
    """
    groups: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
    rest: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not (_BLOCK.match(key) or _GLOBAL.match(key)):
            rest[key] = value
            continue
        suffix = next((s for s in _PARTS if key.endswith(s)), None)
        if suffix is None:
            groups[key]["?"] = value
            continue
        groups[key[: -len(suffix)]][_PARTS[suffix]] = value
    out: dict[str, LoraWeights] = {}
    unknown: list[str] = []
    for stem, parts in groups.items():
        target = _bfl_target(stem)
        if target is None or "down" not in parts or "up" not in parts:
            unknown.append(stem)
            continue
        prefix, names = target
        paths = [f"{prefix}.{n}" if prefix else n for n in names]
        if any(p not in modules for p in paths):
            unknown.append(f"{stem} (no {', '.join(p for p in paths if p not in modules)} in the transformer)")
            continue
        alpha = None if "alpha" not in parts else float(parts["alpha"].item())
        up = parts["up"]
        if paths == ["norm_out.linear"]:
            shift, scale = up.chunk(2, dim=0)
            up = torch.cat([scale, shift], dim=0)
        sizes = [_out_features(modules[p]) for p in paths]
        if sum(sizes) != up.shape[0]:
            unknown.append(f"{stem} (up has {up.shape[0]} rows, the layers take {sum(sizes)})")
            continue
        for path, piece in zip(paths, up.split(sizes, dim=0)):
            out[path] = LoraWeights(parts["down"], piece.contiguous(), alpha)
    if unknown:
        raise LoraFormatError(f"{source}: {len(unknown)} Flux key(s) match no transformer layer: {', '.join(unknown[:20])}")
    return out, rest
