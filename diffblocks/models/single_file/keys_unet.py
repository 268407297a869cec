"""UNet2DConditionModel <-> the original (LDM / Stability) ``model.diffusion_model.*`` layout.

The LDM UNet numbers its blocks flat: ``input_blocks.N`` walks every resnet (with its
attention at ``.1``) and every downsampler of every level in order; ``output_blocks.N`` does
the same on the way up (layers_per_block + 1 resnets a level, upsampler last). Inside a block
the resnet leaves are renamed; attention (``SpatialTransformer``) leaves are already named as
diffusers names them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from diffblocks.models.single_file.table import Row

if TYPE_CHECKING:  # annotations only: single_file never imports the model modules at runtime
    from diffblocks.models.unet_2d_condition import UNet2DConditionConfig

__all__ = ["UNET_PREFIX", "RESNET_LEAVES", "unet_rows"]

UNET_PREFIX = "model.diffusion_model."

#: diffusers ResnetBlock2D -> LDM ResBlock
RESNET_LEAVES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}

#: embeddings and the stem / head, independent of the block layout
FIXED_ROWS = [
    Row("conv_in.", "input_blocks.0.0."),
    Row("time_embedding.linear_1.", "time_embed.0."),
    Row("time_embedding.linear_2.", "time_embed.2."),
    Row("add_embedding.linear_1.", "label_emb.0.0."),  # SDXL's text-time embedding
    Row("add_embedding.linear_2.", "label_emb.0.2."),
    Row("class_embedding.linear_1.", "label_emb.0.0."),
    Row("class_embedding.linear_2.", "label_emb.0.2."),
    Row("conv_norm_out.", "out.0."),
    Row("conv_out.", "out.2."),
]


def unet_rows(config: UNet2DConditionConfig) -> list[Row]:
    """The table for one UNet layout (the flat LDM block numbers depend on the config)."""
    rows = list(FIXED_ROWS)
    levels = len(config.block_out_channels)
    layers = config.per_block("layers_per_block")

    n = 1  # input_blocks.0 is conv_in
    for i in range(levels):
        for j in range(layers[i]):
            rows.append(Row(f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{n}.0.", RESNET_LEAVES))
            rows.append(Row(f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{n}.1."))
            n += 1
        if i < levels - 1:
            rows.append(Row(f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{n}.0.op."))
            n += 1

    rows.append(Row("mid_block.resnets.0.", "middle_block.0.", RESNET_LEAVES))
    rows.append(Row("mid_block.attentions.0.", "middle_block.1."))
    rows.append(Row("mid_block.resnets.1.", "middle_block.2.", RESNET_LEAVES))

    n = 0
    for i, name in enumerate(config.up_block_types):
        count = layers[levels - 1 - i] + 1
        for j in range(count):
            rows.append(Row(f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{n}.0.", RESNET_LEAVES))
            rows.append(Row(f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{n}.1."))
            n += 1
        # the upsampler sits in the level's last output block, after the resnet (and attention)
        slot = 2 if name.startswith("CrossAttn") else 1
        rows.append(Row(f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{n - 1}.{slot}."))
    return rows
