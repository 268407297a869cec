"""Our UNet as a drop-in inside diffusers' own SD / SDXL pipelines (code written against diffusers' UNet)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from diffblocks.models import UNet2DConditionModel
from tests.models.tiny import SD15, SDXL, save_diffusers_unet


def _vae() -> Any:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4, sample_size=32,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
    ).eval()


# SD 1.5 runs the same calls minus added_cond_kwargs; SDXL alone keeps the import cost to one pipeline.
@pytest.mark.parametrize("name", ["sdxl"])
def test_diffusers_pipeline_gives_identical_images_with_our_unet(name: str, tmp_path: Path) -> None:
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    config = SD15 if name == "sd15" else SDXL
    ref = save_diffusers_unet(config, tmp_path)
    ours = UNet2DConditionModel.from_pretrained(tmp_path)
    vae, scheduler = _vae(), EulerDiscreteScheduler()
    g = torch.Generator().manual_seed(0)
    dim = config["cross_attention_dim"]
    kwargs: dict[str, Any] = {
        "prompt_embeds": torch.randn(1, 7, dim, generator=g),
        "negative_prompt_embeds": torch.randn(1, 7, dim, generator=g),
        "num_inference_steps": 2, "height": 64, "width": 64, "output_type": "pt",
    }
    if name == "sdxl":
        kwargs["pooled_prompt_embeds"] = torch.randn(1, 32, generator=g)
        kwargs["negative_pooled_prompt_embeds"] = torch.randn(1, 32, generator=g)

    images = []
    for unet in (ref, ours):
        if name == "sd15":
            pipe = StableDiffusionPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler,
                                           safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        else:
            pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=None, text_encoder_2=None, tokenizer=None,
                                             tokenizer_2=None, unet=unet, scheduler=scheduler)
        pipe.set_progress_bar_config(disable=True)
        images.append(pipe(**kwargs, generator=torch.Generator().manual_seed(0)).images)
    torch.testing.assert_close(images[1], images[0], atol=1e-5, rtol=0)
