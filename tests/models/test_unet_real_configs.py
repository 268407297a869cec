"""Real SD 1.x / 2.x / SDXL UNet configs: same state-dict keys and shapes as diffusers (built on meta, no weights)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from diffblocks.models import UNet2DConditionModel

SD15 = {
    "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False, "cross_attention_dim": 768, "downsample_padding": 1,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1,
    "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
}
SD21 = {
    **SD15, "attention_head_dim": [5, 10, 20, 20], "cross_attention_dim": 1024, "use_linear_projection": True,
    "upcast_attention": True, "sample_size": 96, "dual_cross_attention": False, "num_class_embeds": None,
    "only_cross_attention": False, "resnet_time_scale_shift": "default", "class_embed_type": None,
}
SDXL = {
    **SD15, "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64, "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20], "block_out_channels": [320, 640, 1280], "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "projection_class_embeddings_input_dim": 2816, "transformer_layers_per_block": [1, 2, 10],
    "use_linear_projection": True, "sample_size": 128, "num_attention_heads": None,
    "encoder_hid_dim": None, "encoder_hid_dim_type": None, "time_embedding_type": "positional",
    "resnet_out_scale_factor": 1.0, "conv_in_kernel": 3, "conv_out_kernel": 3,
}
SDXL_REFINER = {
    **SDXL, "attention_head_dim": [6, 12, 24, 24], "block_out_channels": [384, 768, 1536, 1536],
    "cross_attention_dim": 1280, "projection_class_embeddings_input_dim": 2560, "transformer_layers_per_block": 4,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
}
REAL_CONFIGS: dict[str, dict[str, Any]] = {
    "sd15": SD15,
    "sd15-inpaint": {**SD15, "in_channels": 9},
    "sd21": SD21,
    "sd21-unclip": {**SD21, "class_embed_type": "projection", "projection_class_embeddings_input_dim": 2048},
    "sd2-x4-upscaler": {
        **SD21, "attention_head_dim": 8, "block_out_channels": [256, 512, 512, 1024], "in_channels": 7,
        "num_class_embeds": 1000, "only_cross_attention": [True, True, True, False], "sample_size": 128,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    },
    "sdxl": SDXL,
    "sdxl-refiner": SDXL_REFINER,
    "sdxl-inpaint": {**SDXL, "in_channels": 9},
}


@pytest.mark.parametrize("name", sorted(REAL_CONFIGS))
def test_real_config_state_dict_matches_diffusers(name: str) -> None:
    from diffusers import UNet2DConditionModel as DiffusersUNet

    with torch.device("meta"):
        ours = UNet2DConditionModel.from_config(REAL_CONFIGS[name]).state_dict()
        theirs = DiffusersUNet(**REAL_CONFIGS[name]).state_dict()
    assert list(ours) == list(theirs)
    wrong = [k for k in ours if ours[k].shape != theirs[k].shape]
    assert not wrong
