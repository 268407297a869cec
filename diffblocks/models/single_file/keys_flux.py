"""FluxTransformer2DModel <-> the Black Forest Labs layout (``double_blocks.N.img_attn.qkv``...).

BFL fuses what diffusers keeps apart: one ``qkv`` projection per stream in the double blocks,
and ``linear1`` = [q, k, v, mlp-in] in the single blocks; those become `part` leaves. The final
modulation is stored as (shift, scale), diffusers' ``norm_out`` as (scale, shift): `swap`.
Files from ComfyUI put ``model.diffusion_model.`` before every key; both are read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from diffblocks.models.single_file.table import Leaf, LeafTable, Row

if TYPE_CHECKING:  # annotations only: single_file never imports the model modules at runtime
    from diffblocks.models.flux import FluxTransformer2DConfig

__all__ = ["flux_rows", "FLUX_PREFIXES"]

#: prefixes seen before the BFL keys (bare files, ComfyUI-saved files)
FLUX_PREFIXES = ("", "model.diffusion_model.")

DOUBLE_LEAVES: LeafTable = {
    "norm1.linear": "img_mod.lin",
    "norm1_context.linear": "txt_mod.lin",
    "attn.to_q": Leaf("img_attn.qkv", "part", 0),
    "attn.to_k": Leaf("img_attn.qkv", "part", 1),
    "attn.to_v": Leaf("img_attn.qkv", "part", 2),
    "attn.norm_q.weight": "img_attn.norm.query_norm.scale",
    "attn.norm_k.weight": "img_attn.norm.key_norm.scale",
    "attn.to_out.0": "img_attn.proj",
    "attn.add_q_proj": Leaf("txt_attn.qkv", "part", 0),
    "attn.add_k_proj": Leaf("txt_attn.qkv", "part", 1),
    "attn.add_v_proj": Leaf("txt_attn.qkv", "part", 2),
    "attn.norm_added_q.weight": "txt_attn.norm.query_norm.scale",
    "attn.norm_added_k.weight": "txt_attn.norm.key_norm.scale",
    "attn.to_add_out": "txt_attn.proj",
    "ff.net.0.proj": "img_mlp.0",
    "ff.net.2": "img_mlp.2",
    "ff_context.net.0.proj": "txt_mlp.0",
    "ff_context.net.2": "txt_mlp.2",
}

SINGLE_LEAVES: LeafTable = {
    "norm.linear": "modulation.lin",
    "attn.to_q": Leaf("linear1", "part", 0),
    "attn.to_k": Leaf("linear1", "part", 1),
    "attn.to_v": Leaf("linear1", "part", 2),
    "proj_mlp": Leaf("linear1", "part", 3),
    "proj_out": "linear2",
    "attn.norm_q.weight": "norm.query_norm.scale",
    "attn.norm_k.weight": "norm.key_norm.scale",
}

SWAP_LEAVES: LeafTable = {"weight": Leaf("weight", "swap"), "bias": Leaf("bias", "swap")}

FIXED_ROWS = [
    Row("x_embedder.", "img_in."),
    Row("context_embedder.", "txt_in."),
    Row("time_text_embed.timestep_embedder.linear_1.", "time_in.in_layer."),
    Row("time_text_embed.timestep_embedder.linear_2.", "time_in.out_layer."),
    Row("time_text_embed.guidance_embedder.linear_1.", "guidance_in.in_layer."),
    Row("time_text_embed.guidance_embedder.linear_2.", "guidance_in.out_layer."),
    Row("time_text_embed.text_embedder.linear_1.", "vector_in.in_layer."),
    Row("time_text_embed.text_embedder.linear_2.", "vector_in.out_layer."),
    Row("norm_out.linear.", "final_layer.adaLN_modulation.1.", SWAP_LEAVES),
    Row("proj_out.", "final_layer.linear."),
]


def flux_rows(config: FluxTransformer2DConfig) -> list[Row]:
    rows = list(FIXED_ROWS)
    rows += [Row(f"transformer_blocks.{n}.", f"double_blocks.{n}.", DOUBLE_LEAVES) for n in range(config.num_layers)]
    rows += [Row(f"single_transformer_blocks.{n}.", f"single_blocks.{n}.", SINGLE_LEAVES)
             for n in range(config.num_single_layers)]
    return rows
