"""Tiny diffusers pipeline folders (random weights, saved by diffusers), built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.components.tiny_pipelines import build_pipeline, save_pipeline


@pytest.fixture(scope="session")
def sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_pipeline("sd", tmp_path_factory.mktemp("presets") / "sd")


@pytest.fixture(scope="session")
def sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_pipeline("sdxl", tmp_path_factory.mktemp("presets") / "sdxl")


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


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tiny models on a shared 2-core machine run ~10x faster on one thread (no oversubscription)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
