"""CLIP text encoders inside SD / SDXL checkpoints.

Two layouts: the Hugging Face one (SD 1.x ``cond_stage_model.transformer.*``, SDXL's first
encoder ``conditioner.embedders.0.transformer.*``), which only needs a prefix, and OpenCLIP's
(SD 2.x ``cond_stage_model.model.*``, SDXL's second encoder ``conditioner.embedders.1.model.*``)
with its fused ``in_proj`` attention and a transposed ``text_projection``.
"""

from __future__ import annotations

from diffblocks.models.single_file.table import Leaf, LeafTable, Row

__all__ = ["hf_clip_rows", "open_clip_rows", "ENCODER_PREFIXES"]

#: (family, component) -> (prefix in the file, layout)
ENCODER_PREFIXES = {
    ("sd1", "text_encoder"): ("cond_stage_model.transformer.", "hf"),
    ("sd2", "text_encoder"): ("cond_stage_model.model.", "open_clip"),
    ("sdxl", "text_encoder"): ("conditioner.embedders.0.transformer.", "hf"),
    ("sdxl", "text_encoder_2"): ("conditioner.embedders.1.model.", "open_clip"),
}

OPEN_CLIP_LAYER_LEAVES: LeafTable = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.q_proj.weight": Leaf("attn.in_proj_weight", "part", 0),
    "self_attn.k_proj.weight": Leaf("attn.in_proj_weight", "part", 1),
    "self_attn.v_proj.weight": Leaf("attn.in_proj_weight", "part", 2),
    "self_attn.q_proj.bias": Leaf("attn.in_proj_bias", "part", 0),
    "self_attn.k_proj.bias": Leaf("attn.in_proj_bias", "part", 1),
    "self_attn.v_proj.bias": Leaf("attn.in_proj_bias", "part", 2),
    "self_attn.out_proj": "attn.out_proj",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}

POSITION_LEAVES: LeafTable = {"weight": "positional_embedding"}
PROJECTION_LEAVES: LeafTable = {"weight": Leaf("text_projection", "transpose")}


# ``ours`` below is where the text transformer's keys start in the transformers model:
# ``text_model.`` in CLIPTextModelWithProjection, nothing in transformers 5's CLIPTextModel.
def hf_clip_rows(ours: str = "text_model.") -> list[Row]:
    """The HF layout is already transformers': only the prefixes differ."""
    return [Row(ours, "text_model.")]


def open_clip_rows(num_layers: int, ours: str = "text_model.") -> list[Row]:
    rows = [
        Row(f"{ours}embeddings.token_embedding.", "token_embedding."),
        Row(f"{ours}embeddings.position_embedding.", "", POSITION_LEAVES),
        Row(f"{ours}final_layer_norm.", "ln_final."),
        # OpenCLIP multiplies x @ P; transformers' Linear stores P transposed
        Row("text_projection.", "", PROJECTION_LEAVES),
    ]
    rows += [Row(f"{ours}encoder.layers.{n}.", f"transformer.resblocks.{n}.", OPEN_CLIP_LAYER_LEAVES)
             for n in range(num_layers)]
    return rows
