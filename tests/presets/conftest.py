"""The inpainting folder only the preset tests use (the shared tiny folders are in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.components.tiny_pipelines import build_pipeline


@pytest.fixture(scope="session")
def sd_inpaint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SD with a 9-channel inpainting UNet (latents + mask + masked-image latents)."""
    import torch
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel

    base = build_pipeline("sd")
    torch.manual_seed(5)
    unet = UNet2DConditionModel.from_config({**base.unet.config, "in_channels": 9})
    parts = {**base.components, "unet": unet}
    folder = tmp_path_factory.mktemp("presets") / "sd-inpaint"
    StableDiffusionInpaintPipeline(**parts, requires_safety_checker=False).save_pretrained(str(folder))
    return folder
