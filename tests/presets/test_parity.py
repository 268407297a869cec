"""The SD 1.5 / SDXL presets equal diffusers' pipelines on tiny random weights saved by diffusers:
same folder, inputs and seed -> images within 1e-4 (fp32, output_type="np")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffblocks.presets import load_preset

from .parity import TOLERANCE, diffusers_pipeline, manager, run_both, sample_image, sample_mask

PROMPT = "a photo of a cat"


def assert_close(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= TOLERANCE


# ---- SD 1.5 ----------------------------------------------------------------------------------
def test_sd_text2img(tiny_sd_dir):
    assert_close(*run_both(tiny_sd_dir, "sd15", "text2img", prompt=PROMPT))


def test_sd_text2img_euler_a_negative_batch_rescale(tiny_sd_dir):
    ours, theirs = run_both(
        tiny_sd_dir, "sd15", "text2img", scheduler="euler_a", prompt=["a cat", "a dog"],
        negative_prompt=["red", "grass"], num_images_per_prompt=2, guidance_rescale=0.7, guidance_scale=6.0,
    )
    assert ours.shape[0] == 4
    assert_close(ours, theirs)


def test_sd_text2img_dpmpp_2m_karras_clip_skip(tiny_sd_dir):
    pipe = diffusers_pipeline(tiny_sd_dir, "sd15", "text2img")
    # diffusers reads text_encoder.text_model.final_layer_norm, which transformers 5 no longer nests.
    object.__setattr__(pipe.text_encoder, "text_model", pipe.text_encoder)
    assert_close(*run_both(tiny_sd_dir, "sd15", "text2img", scheduler="dpmpp_2m_karras", prompt=PROMPT,
                           clip_skip=1, num_inference_steps=3))


def test_sd_text2img_ddim_eta(tiny_sd_dir):
    assert_close(*run_both(tiny_sd_dir, "sd15", "text2img", scheduler="ddim", prompt=PROMPT, eta=0.5, seed=3))


def test_sd_text2img_generator_list(tiny_sd_dir):
    assert_close(*run_both(tiny_sd_dir, "sd15", "text2img", prompt=PROMPT, num_images_per_prompt=2, n_generators=2))


def test_sd_text2img_prompt_embeds_given(tiny_sd_dir):
    pipe = diffusers_pipeline(tiny_sd_dir, "sd15", "text2img")
    embeds, negative = pipe.encode_prompt("a photo of a dog", "cpu", 1, True, "grass")
    assert_close(*run_both(tiny_sd_dir, "sd15", "text2img", prompt_embeds=embeds, negative_prompt_embeds=negative,
                           num_images_per_prompt=2))


def test_sd_img2img_generator_list(tiny_sd_dir):
    assert_close(*run_both(tiny_sd_dir, "sd15", "img2img", prompt=PROMPT, image=sample_image(), strength=0.5,
                           num_inference_steps=4, num_images_per_prompt=2, n_generators=2))


def test_sd_img2img(tiny_sd_dir):
    assert_close(*run_both(tiny_sd_dir, "sd15", "img2img", prompt=PROMPT, image=sample_image(), strength=0.6, num_inference_steps=4))


def test_sd_img2img_euler_a_batch(tiny_sd_dir):
    assert_close(*run_both(tiny_sd_dir, "sd15", "img2img", scheduler="euler_a", prompt=PROMPT, image=sample_image(),
                           strength=0.75, num_inference_steps=4, num_images_per_prompt=2, negative_prompt="dog"))


def test_sd_inpaint_blend_4_channels(tiny_sd_dir):
    assert_close(*run_both(tiny_sd_dir, "sd15", "inpaint", prompt=PROMPT, image=sample_image(), mask_image=sample_mask(),
                           strength=0.75, num_inference_steps=4))


def test_sd_inpaint_9_channels(sd_inpaint_dir):
    assert_close(*run_both(sd_inpaint_dir, "sd15", "inpaint", prompt=PROMPT, image=sample_image(), mask_image=sample_mask()))


def test_sd_inpaint_9_channels_partial_strength_dpm(sd_inpaint_dir):
    assert_close(*run_both(sd_inpaint_dir, "sd15", "inpaint", scheduler="dpmpp_2m_karras", prompt=PROMPT,
                           image=sample_image(), mask_image=sample_mask(), strength=0.6, num_inference_steps=5))


# ---- SDXL ------------------------------------------------------------------------------------
def test_sdxl_text2img_micro_conditioning(tiny_sdxl_dir):
    assert_close(*run_both(tiny_sdxl_dir, "sdxl", "text2img", prompt=PROMPT, prompt_2="a painting of a dog",
                           original_size=(128, 96), crops_coords_top_left=(4, 8), target_size=(64, 64),
                           negative_original_size=(32, 32), negative_target_size=(48, 48),
                           negative_crops_coords_top_left=(2, 2)))


def test_sdxl_text2img_euler_a_negative_batch_rescale(tiny_sdxl_dir):
    ours, theirs = run_both(
        tiny_sdxl_dir, "sdxl", "text2img", scheduler="euler_a", prompt=["a cat", "a dog"],
        negative_prompt=["red", "grass"], negative_prompt_2=["horse", "photo"], num_images_per_prompt=2,
        guidance_rescale=0.5,
    )
    assert ours.shape[0] == 4
    assert_close(ours, theirs)


def test_sdxl_text2img_dpmpp_2m_karras_clip_skip(tiny_sdxl_dir):
    assert_close(*run_both(tiny_sdxl_dir, "sdxl", "text2img", scheduler="dpmpp_2m_karras", prompt=PROMPT,
                           clip_skip=1, num_inference_steps=3))


def test_sdxl_text2img_prompt_embeds_given(tiny_sdxl_dir):
    pipe = diffusers_pipeline(tiny_sdxl_dir, "sdxl", "text2img")
    embeds, negative, pooled, negative_pooled = pipe.encode_prompt("a photo of a dog", negative_prompt="grass")
    assert_close(*run_both(tiny_sdxl_dir, "sdxl", "text2img", prompt_embeds=embeds, negative_prompt_embeds=negative,
                           pooled_prompt_embeds=pooled, negative_pooled_prompt_embeds=negative_pooled))


def test_sdxl_img2img(tiny_sdxl_dir):
    assert_close(*run_both(tiny_sdxl_dir, "sdxl", "img2img", prompt=PROMPT, image=sample_image(), strength=0.6,
                           num_inference_steps=4, negative_prompt="dog"))


def test_sdxl_inpaint(tiny_sdxl_dir):
    # Defaults as diffusers' SDXL inpaint pipeline: guidance 7.5 (not text2img's 5.0), strength 0.9999.
    assert_close(*run_both(tiny_sdxl_dir, "sdxl", "inpaint", prompt=PROMPT, image=sample_image(), mask_image=sample_mask(),
                           num_inference_steps=3))


# ---- per-run scheduler state -----------------------------------------------------------------
@pytest.mark.parametrize("scheduler", ["dpmpp_2m_karras", "euler_a"])
def test_two_runs_in_a_row_equal_two_fresh_runs(tiny_sd_dir, scheduler):
    inputs = {"prompt": PROMPT, "num_inference_steps": 3, "output_type": "np"}
    graph, cm = load_preset("sd15"), manager(tiny_sd_dir, scheduler)
    again = [graph.run(inputs={**inputs, "generator": torch.Generator().manual_seed(s)}, components=cm, progress=False).images
             for s in (1, 2)]
    fresh = [load_preset("sd15").run(inputs={**inputs, "generator": torch.Generator().manual_seed(s)},
                                     components=manager(tiny_sd_dir, scheduler), progress=False).images for s in (1, 2)]
    # set_timesteps makes each run its own sampler state (never memoised), which the loop advances.
    assert graph.compile().last_run_report.nodes["set_timesteps"].status == "ran"
    for a, b in zip(again, fresh):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("scheduler", ["pndm", "heun", "lms", "unipc", "ddpm"])
def test_sd_inpaint_blend_other_samplers(tiny_sd_dir, scheduler):
    """4-channel inpainting re-noises the known region to the next timestep: the sampler's
    begin index (Heun's doubled steps, PNDM's PLMS) must line up with diffusers'."""
    if scheduler == "lms":
        pytest.importorskip("scipy", reason="diffusers' LMS scheduler integrates with scipy")
    assert_close(*run_both(tiny_sd_dir, "sd15", "inpaint", scheduler=scheduler, prompt=PROMPT, image=sample_image(),
                           mask_image=sample_mask(), strength=0.7, num_inference_steps=4))
