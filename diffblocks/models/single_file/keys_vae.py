"""AutoencoderKL <-> the original (LDM) ``first_stage_model.*`` layout.

Two quirks: the LDM decoder numbers its levels bottom-up (``decoder.up.0`` is the last level
diffusers runs), and the mid-block attention is written with 1x1 convolutions where
diffusers uses linear layers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from diffblocks.models.single_file.table import Leaf, LeafTable, Row

if TYPE_CHECKING:  # annotations only: single_file never imports the model modules at runtime
    from diffblocks.models.autoencoder_kl import AutoencoderKLConfig

__all__ = ["VAE_PREFIX", "vae_rows"]

VAE_PREFIX = "first_stage_model."

RESNET_LEAVES: LeafTable = {"conv_shortcut": "nin_shortcut"}

ATTENTION_LEAVES: LeafTable = {
    "group_norm": "norm",
    "to_q": Leaf("q", "conv1x1"),
    "to_k": Leaf("k", "conv1x1"),
    "to_v": Leaf("v", "conv1x1"),
    "to_out.0": Leaf("proj_out", "conv1x1"),
}


def vae_rows(config: AutoencoderKLConfig) -> list[Row]:
    """The table for one VAE layout (level count and resnets per level come from the config)."""
    levels = len(config.block_out_channels)
    rows = [
        Row("quant_conv.", "quant_conv."),
        Row("post_quant_conv.", "post_quant_conv."),
    ]
    for part in ("encoder", "decoder"):
        rows += [
            Row(f"{part}.conv_in.", f"{part}.conv_in."),
            Row(f"{part}.conv_out.", f"{part}.conv_out."),
            Row(f"{part}.conv_norm_out.", f"{part}.norm_out."),
            Row(f"{part}.mid_block.resnets.0.", f"{part}.mid.block_1.", RESNET_LEAVES),
            Row(f"{part}.mid_block.resnets.1.", f"{part}.mid.block_2.", RESNET_LEAVES),
            Row(f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1.", ATTENTION_LEAVES),
        ]
    for i in range(levels):
        up = levels - 1 - i  # LDM counts decoder levels from the bottom
        rows += [Row(f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}.", RESNET_LEAVES)
                 for j in range(config.layers_per_block)]
        rows += [Row(f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{up}.block.{j}.", RESNET_LEAVES)
                 for j in range(config.layers_per_block + 1)]
        rows.append(Row(f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."))
        rows.append(Row(f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{up}.upsample."))
    return rows
