"""Tiny ControlNet / T2I-Adapter pipeline folders (random weights, saved by diffusers) for the parity tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch

from tests.components.tiny_pipelines import sd_components, sdxl_components

SIZE = 32  # pixels: 16x16 latents with the tiny VAE (scale factor 2)


def tiny_controlnet(unet: Any, seed: int) -> Any:
    """A diffusers ControlNet from ``unet`` with random weights everywhere (its zero convs too, so the
    residuals matter) and a conditioning embedding that downsamples by 2, like the tiny VAE."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            zero_init = name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out"))
            p.copy_(torch.randn(p.shape, generator=g) * 0.3) if zero_init else p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return net.eval()


def tiny_adapter(seed: int) -> Any:
    """A diffusers T2IAdapter whose two feature maps fit the tiny UNets' two down blocks."""
    from diffusers import T2IAdapter

    torch.manual_seed(seed)
    adapter = T2IAdapter(in_channels=3, channels=[32, 64], num_res_blocks=1, downscale_factor=2, adapter_type="full_adapter")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return adapter.eval()


def save_control_pipeline(kind: str, family: str, folder: Path, n_controlnets: int = 1) -> tuple[Path, list[Any]]:
    """Save a diffusers ControlNet ("controlnet") or adapter ("adapter") pipeline of ``family``
    ("sd15" / "sdxl"); returns the folder and the diffusers ControlNets / adapter it holds."""
    import inspect

    import diffusers

    parts = sd_components() if family == "sd15" else sdxl_components()
    xl = "XL" if family == "sdxl" else ""
    if kind == "controlnet":
        nets = [tiny_controlnet(parts["unet"], seed=10 + i) for i in range(n_controlnets)]
        cls = getattr(diffusers, f"StableDiffusion{xl}ControlNetPipeline")
        extra: dict[str, Any] = {"controlnet": nets[0] if n_controlnets == 1 else nets}
    else:
        # Adapter features join after a cross-attention block's first layer and after a plain
        # block: attention first gives feature sizes (16, 8) that a 2-stage adapter makes.
        from diffusers import UNet2DConditionModel

        config = dict(parts["unet"].config)
        config.update(down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
        if family == "sdxl":
            config["transformer_layers_per_block"] = (2, 1)
        torch.manual_seed(7)
        parts["unet"] = UNet2DConditionModel.from_config(config)
        nets = [tiny_adapter(seed=20)]
        cls = getattr(diffusers, f"StableDiffusion{xl}AdapterPipeline")
        extra = {"adapter": nets[0]}
    accepted = inspect.signature(cls.__init__).parameters
    parts = {k: v for k, v in parts.items() if k in accepted}
    for flag in ("requires_safety_checker", "add_watermarker"):
        if flag in accepted:
            extra[flag] = False
    pipe = cls(**parts, **extra)
    pipe.save_pretrained(str(folder))
    for i, net in enumerate(nets):  # each net alone too, for a MultiControlNetModel of ours
        net.save_pretrained(str(folder / f"net{i}"))
    return folder, nets


def control_image(seed: int = 0, size: int = SIZE) -> PIL.Image.Image:
    rng = np.random.default_rng(100 + seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
