"""A minimal text-to-image sampler for the tiny shapes model.

It measures the model while it trains and in tests, before any preset graph exists. It
takes the components as arguments and relies only on their diffusers-compatible calls
(``unet(x, t, encoder_hidden_states=...).sample``, ``vae.decode(z).sample``,
``scheduler.set_timesteps/step``), so it runs our classes and diffusers' alike. The
steps mirror Stable Diffusion's text-to-image loop: unconditional and conditional
halves in one batch (unconditional first), classifier-free guidance, decode with the
VAE's ``scaling_factor``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch


def load_components(folder: str | Path, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Load a Stable Diffusion folder (unet, vae, text_encoder, tokenizer, scheduler).

    Our UNet, VAE and DDIM scheduler, transformers' CLIP; weights are cast to ``dtype``.
    """
    from transformers import CLIPTextModel, CLIPTokenizer

    from diffblocks.models import AutoencoderKL, UNet2DConditionModel
    from diffblocks.schedulers import DDIMScheduler

    folder = Path(folder)
    return {
        "unet": UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=dtype),
        "vae": AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=dtype),
        "text_encoder": CLIPTextModel.from_pretrained(folder / "text_encoder", dtype=dtype).eval(),
        "tokenizer": CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        "scheduler": DDIMScheduler.from_pretrained(folder / "scheduler"),
    }


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
    """Generate one image per prompt as RGB images of shape (N, H, W, 3).

    The images are uint8, or with ``as_uint8=False`` float32 in [0, 1] (diffusers'
    ``output_type="np"``).

    The initial noise for the whole batch comes from one CPU generator seeded with ``seed``,
    as in diffusers' pipelines, so a batch is reproducible.
    """
    device = next(unet.parameters()).device
    dtype = next(unet.parameters()).dtype
    cond = encode_prompts(text_encoder, tokenizer, prompts)
    uncond = encode_prompts(text_encoder, tokenizer, [""] * len(prompts))
    context = torch.cat([uncond, cond]).to(dtype)

    side = unet.config.sample_size
    shape = (len(prompts), unet.config.in_channels, side, side)
    generator = torch.Generator("cpu").manual_seed(seed)
    latents = torch.randn(shape, generator=generator, dtype=torch.float32).to(device, dtype)
    scheduler.set_timesteps(steps)
    latents = latents * scheduler.init_noise_sigma

    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(torch.cat([latents, latents]), t)
        noise_uncond, noise_cond = unet(model_in, t, encoder_hidden_states=context).sample.chunk(2)
        noise = noise_uncond + guidance_scale * (noise_cond - noise_uncond)
        latents = scheduler.step(noise, t, latents).prev_sample

    images = decode_latents(vae, latents)
    return (images * 255).round().astype(np.uint8) if as_uint8 else images


def decode_latents(vae: Any, latents: torch.Tensor) -> np.ndarray:
    """Scaled latents -> float32 RGB images in [0, 1] of shape (N, H, W, 3)."""
    images = vae.decode(latents / vae.config.scaling_factor).sample
    return (images.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
