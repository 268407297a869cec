"""Model latents <-> VAE latents follow each VAE config's convention (diffusers' pipelines):
SD/SDXL scale only, SD3/Flux VAEs shift then scale, latents_mean/std VAEs normalise."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from diffblocks.presets.stages.vae import sample_image_latents, to_vae_latents


def _vae(**config):
    base = {"scaling_factor": 0.5, "shift_factor": None, "latents_mean": None, "latents_std": None}
    return SimpleNamespace(config=SimpleNamespace(**{**base, **config}))


def _moments(mean: torch.Tensor) -> torch.Tensor:
    # log-variance -30 clamps to std ~3e-7: the "sample" is the mean to float precision
    return torch.cat([mean, torch.full_like(mean, -30.0)], dim=1)


def test_scale_only_shift_and_normalise():
    z = torch.randn(1, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    cases = {
        "scale": (_vae(), z * 0.5),
        "shift": (_vae(shift_factor=0.25), (z - 0.25) * 0.5),  # Flux: (z - shift) * scale
        "normalise": (_vae(latents_mean=[0.1] * 4, latents_std=[2.0] * 4), (z - 0.1) * 0.5 / 2.0),
    }
    for name, (vae, expected) in cases.items():
        latents = sample_image_latents(vae, _moments(z), gen, torch.float32)
        torch.testing.assert_close(latents, expected, atol=1e-5, rtol=0, msg=name)
        torch.testing.assert_close(to_vae_latents(vae, latents), z, atol=1e-5, rtol=0, msg=name)
