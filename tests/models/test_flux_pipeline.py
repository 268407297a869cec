"""Our Flux transformer and VAE are drop-in for diffusers' own FluxPipeline.

This checks the contract that code written against diffusers' models uses (config attributes,
the t/1000 timestep convention, guidance, ``vae.decode(..., return_dict=False)[0]``, latents
``shift_factor``/``scaling_factor``) end to end, with the pipeline as the reference caller.
"""

from __future__ import annotations

import pytest
import torch

from diffblocks.models import AutoencoderKL, FluxTransformer2DModel

from .tiny_flux_vae import (
    FLUX_DEV_LIKE, FLUX_SCHNELL_LIKE, VAE_FLUX_LIKE, max_diff)

diffusers = pytest.importorskip("diffusers")

# Flux packs 2x2 latent patches: the transformer's 4 input channels are 1 latent channel x 4.
VAE = {**VAE_FLUX_LIKE, "latent_channels": 1, "block_out_channels": (32, 32),
       "down_block_types": ("DownEncoderBlock2D",) * 2, "up_block_types": ("UpDecoderBlock2D",) * 2}


def _image(transformer: torch.nn.Module, vae: torch.nn.Module) -> torch.Tensor:
    pipe = diffusers.FluxPipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=vae, transformer=transformer,
        text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None)
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(1)
    return pipe(prompt_embeds=torch.randn(1, 6, 32, generator=g),
                pooled_prompt_embeds=torch.randn(1, 32, generator=g),
                num_inference_steps=2, height=32, width=32, guidance_scale=3.5,
                generator=torch.Generator().manual_seed(0), output_type="pt").images


@pytest.mark.parametrize("config", [FLUX_DEV_LIKE, FLUX_SCHNELL_LIKE], ids=["dev", "schnell"])
@torch.no_grad()
def test_diffusers_flux_pipeline_gives_the_same_image_with_our_models(config):
    torch.manual_seed(0)
    ref_transformer = diffusers.FluxTransformer2DModel(**config).eval()
    ref_vae = diffusers.AutoencoderKL(**VAE).eval()
    transformer = FluxTransformer2DModel.from_config(config).eval()
    transformer.load_state_dict(ref_transformer.state_dict())
    vae = AutoencoderKL.from_config(VAE).eval()
    vae.load_state_dict(ref_vae.state_dict())

    expected = _image(ref_transformer, ref_vae)
    got = _image(transformer, vae)
    assert got.shape == (1, 3, 32, 32)
    assert max_diff(got, expected) <= 1e-5


@torch.no_grad()
def test_diffusers_flux_img2img_pipeline_gives_the_same_image_with_our_models():
    """img2img also encodes: our posterior's sample(generator) must draw diffusers' noise."""
    torch.manual_seed(0)
    ref_transformer = diffusers.FluxTransformer2DModel(**FLUX_DEV_LIKE).eval()
    ref_vae = diffusers.AutoencoderKL(**VAE).eval()
    transformer = FluxTransformer2DModel.from_config(FLUX_DEV_LIKE).eval()
    transformer.load_state_dict(ref_transformer.state_dict())
    vae = AutoencoderKL.from_config(VAE).eval()
    vae.load_state_dict(ref_vae.state_dict())
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))

    def run(transformer: torch.nn.Module, vae: torch.nn.Module) -> torch.Tensor:
        pipe = diffusers.FluxImg2ImgPipeline(
            scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=vae, transformer=transformer,
            text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None)
        pipe.set_progress_bar_config(disable=True)
        g = torch.Generator().manual_seed(1)
        return pipe(image=image, prompt_embeds=torch.randn(1, 6, 32, generator=g),
                    pooled_prompt_embeds=torch.randn(1, 32, generator=g), strength=0.6,
                    num_inference_steps=4, height=32, width=32,
                    generator=torch.Generator().manual_seed(0), output_type="pt").images

    assert max_diff(run(transformer, vae), run(ref_transformer, ref_vae)) <= 1e-5
