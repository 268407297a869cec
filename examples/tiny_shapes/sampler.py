"""Text-to-image with the tiny shapes model, through the SD 1.5 preset graph.

`generate` runs the same graph as ``Pipeline.from_pretrained(folder)`` and ``diffblocks run``
(prompt encoding, guidance batched, DDIM, VAE decode), on components held in memory, so the
training script can measure the model it is training without saving it first.
`encode_prompts` and `decode_latents` are the two halves the training loss and the shape-word
probe need on their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffblocks.pipeline import Pipeline
from diffblocks.presets import load_preset

COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def load_components(folder: str | Path, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Load a Stable Diffusion folder (unet, vae, text_encoder, tokenizer, scheduler) with our
    UNet, VAE and scheduler and transformers' CLIP, weights cast to ``dtype``."""
    manager = Pipeline.from_pretrained(folder, torch_dtype=dtype).components
    return {name: manager[name] for name in COMPONENTS}


def encode_prompts(text_encoder: Any, tokenizer: Any, prompts: list[str]) -> torch.Tensor:
    """Last hidden states of ``text_encoder`` for ``prompts`` padded to the tokenizer's length."""
    ids = tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length,
        truncation=True, return_tensors="pt",
    ).input_ids
    device = next(text_encoder.parameters()).device
    return text_encoder(ids.to(device))[0]


@torch.no_grad()
def generate(
    unet: Any,
    vae: Any,
    text_encoder: Any,
    tokenizer: Any,
    scheduler: Any,
    prompts: list[str],
    *,
    steps: int = 20,
    guidance_scale: float = 5.0,
    seed: int = 0,
    as_uint8: bool = True,
) -> np.ndarray:
    """One image per prompt from the SD 1.5 text-to-image preset, as RGB of shape (N, H, W, 3):
    uint8, or with ``as_uint8=False`` float32 in [0, 1]. The batch's noise comes from one CPU
    generator seeded with ``seed``, as in diffusers' pipelines."""
    parts = {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "scheduler": scheduler}
    side = unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1)
    pipe = Pipeline(load_preset("sd15-text2img"), parts)
    images = pipe(prompt=prompts, num_inference_steps=steps, guidance_scale=guidance_scale, seed=seed,
                  height=side, width=side, output_type="np", progress=False).images
    return (images * 255).round().astype(np.uint8) if as_uint8 else images


def decode_latents(vae: Any, latents: torch.Tensor) -> np.ndarray:
    """Scaled latents -> float32 RGB images in [0, 1] of shape (N, H, W, 3)."""
    images = vae.decode(latents / vae.config.scaling_factor).sample
    return (images.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
