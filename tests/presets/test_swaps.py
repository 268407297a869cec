"""Editing a preset: one ``replace`` swaps the guider or the decoder; a step callback edits the
latents; memoisation skips what did not change between runs; bad inputs fail before denoising."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffblocks.blocks import Latents, RunContext, block
from diffblocks.presets.stages.images import postprocess_images
from diffblocks.presets.stages.vae import to_vae_latents
from diffblocks.graph import GraphError
from diffblocks.presets import load_preset

from .parity import manager, sample_image, sample_mask

BASE = {"prompt": "a photo of a cat", "num_inference_steps": 2, "output_type": "np"}


def run(graph, cm, seed=0, **inputs):
    return graph.run(inputs={**BASE, **inputs, "generator": torch.Generator().manual_seed(seed)}, components=cm, progress=False)


@pytest.fixture()
def sd(tiny_sd_dir):
    cm = manager(tiny_sd_dir)
    cm.load()  # see test_second_run_with_new_seed_reuses_unchanged_nodes
    return load_preset("sd15"), cm


def test_replace_cfg_by_apg(sd):
    graph, cm = sd
    cfg = run(graph, cm).images
    graph.nodes["denoise"].body.replace("guidance", "apply_apg", config={"momentum": -0.5})
    apg = run(graph, cm).images
    assert apg.shape == cfg.shape and np.isfinite(apg).all()
    assert np.abs(apg - cfg).max() > 1e-4
    report = graph.compile().last_run_report
    assert report.nodes["encode_prompt"].status == "hit"  # the swap re-ran only what depends on it
    graph.nodes["denoise"].body.replace("guidance", "apply_cfg_zero_star")
    assert np.isfinite(run(graph, cm).images).all()


def test_no_guidance_is_one_conditional_pass(sd):
    graph, cm = sd
    calls = []
    unet = cm["unet"]
    handle = unet.register_forward_pre_hook(lambda mod, args, kwargs: calls.append(args[0].shape[0]), with_kwargs=True)
    try:
        graph.nodes["denoise"].body.replace("prepare_guidance", "prepare_unguided")
        unguided = run(graph, cm).images
        assert calls == [1, 1]
        graph.nodes["denoise"].body.replace("prepare_guidance", "prepare_guidance")
        same = run(graph, cm, guidance_scale=1.0).images
        np.testing.assert_allclose(same, unguided, atol=1e-6)
        calls.clear()
        run(graph, cm, guidance_scale=5.0)
        assert calls == [2, 2]  # guidance on: one batched forward per step
    finally:
        handle.remove()


def test_replace_decoder_by_tiled_decoder(sd):
    graph, cm = sd
    plain = run(graph, cm)
    graph.replace("decode", "decode_latents_tiled")
    tiled = run(graph, cm)
    report = graph.compile().last_run_report
    assert report.nodes["encode_prompt"].status == "hit" and report.nodes["decode"].status == "miss"
    np.testing.assert_array_equal(tiled.latents, plain.latents)
    vae = cm["vae"]
    with torch.no_grad():
        expected = postprocess_images(images=vae.tiled_decode(to_vae_latents(vae, tiled.latents)).sample, output_type="np")
    np.testing.assert_allclose(tiled.images, expected, atol=1e-6)


def test_step_callback_edits_latents(sd):
    graph, cm = sd
    seen = []

    def zero_last(step, t, carried):
        seen.append(step)
        if step == 1:
            return {"latents": torch.zeros_like(carried["latents"])}

    result = graph.run(inputs={**BASE, "generator": torch.Generator().manual_seed(0)}, components=cm,
                       progress=False, callbacks={"denoise": zero_last})
    assert seen == [0, 1] and not result.latents.any()
    vae = cm["vae"]
    with torch.no_grad():
        expected = postprocess_images(images=vae.decode(to_vae_latents(vae, result.latents)).sample, output_type="np")
    np.testing.assert_allclose(result.images, expected, atol=1e-6)


def test_second_run_with_new_seed_reuses_unchanged_nodes(sd):
    """Components are loaded before the first run: ComponentsManager fingerprints a component by
    its spec before loading and by the object after, so a first run that loads them cannot be
    matched by the second one (noted for the components owner)."""
    graph, cm = sd
    encoder = cm["text_encoder"]
    calls, image = [], sample_image()
    handle = encoder.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        first = run(graph, cm, seed=0, image=image, strength=0.5)
        encodes = len(calls)
        assert encodes == 2  # prompt and negative prompt
        second = run(graph, cm, seed=1, image=image, strength=0.5)
    finally:
        handle.remove()
    assert len(calls) == encodes
    report = graph.compile().last_run_report
    assert set(report.hits) >= {"check_inputs", "encode_prompt", "preprocess_image", "preprocess_mask", "encode_image"}
    # set_timesteps makes a fresh sampler state every run (not memoised).
    assert set(report.ran) == {"set_timesteps", "prepare_latents", "denoise", "decode", "postprocess"}
    assert np.abs(first.images - second.images).max() > 0


@pytest.mark.parametrize(
    ("inputs", "words"),
    [
        ({"height": 63}, "height must be a multiple of"),
        ({"image": sample_image(63)}, "image height 63 is not a multiple of"),
        ({"mask_image": sample_mask()}, "mask_image was given without image"),
        ({"image": sample_image(), "strength": 1.5}, "strength must be in [0, 1]"),
        ({"num_inference_steps": 0}, "num_inference_steps must be at least 1"),
        ({"output_type": "jpeg"}, "output_type must be one of"),
    ],
)
def test_bad_input_fails_before_denoising(sd, inputs, words):
    graph, cm = sd
    with pytest.raises(ValueError, match=None) as caught:
        run(graph, cm, **inputs)
    assert words in str(caught.value)
    assert any("check_inputs" in note for note in getattr(caught.value, "__notes__", []))
    assert "denoise" not in graph.compile().last_run_report.nodes


def test_missing_or_mistyped_prompt(sd):
    graph, cm = sd
    with pytest.raises(ValueError, match="prompt is missing"):
        graph.run(inputs={"num_inference_steps": 2}, components=cm, progress=False)
    assert "denoise" not in graph.compile().last_run_report.nodes
    with pytest.raises(ValueError, match="give prompt or prompt_embeds, not both"):
        run(graph, cm, prompt_embeds=torch.zeros(1, 77, 32))
    with pytest.raises(GraphError, match="input prompt expects"):  # checked at the graph boundary
        run(graph, cm, prompt=["a cat", 3])


def test_half_precision_vae_decodes_upcast_when_force_upcast(sd):
    from diffblocks.presets.stages.vae import decode_latents

    import copy

    graph, cm = sd
    vae = copy.deepcopy(cm["vae"])  # the loaded VAE is shared by every manager of this folder
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    full = decode_latents(components={"vae": vae}, latents=latents, output_type="np")
    vae.half()
    assert vae.config.force_upcast
    half = decode_latents(components={"vae": vae}, latents=latents.half(), output_type="np")
    assert next(vae.parameters()).dtype == torch.float16  # put back after decoding
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, full, atol=2e-2, rtol=0)


def test_sdxl_pipeline_second_call_reuses_both_text_encoders(tiny_sdxl_dir):
    from diffblocks.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(tiny_sdxl_dir)
    pipe.components.load()  # see test_second_run_with_new_seed_reuses_unchanged_nodes
    calls = []
    hooks = [pipe.components[name].register_forward_pre_hook(lambda *a, n=name: calls.append(n))
             for name in ("text_encoder", "text_encoder_2")]
    try:
        first = pipe(prompt="a cat", negative_prompt="dog", num_inference_steps=2, output_type="np", seed=0, progress=False)
        assert sorted(calls) == ["text_encoder", "text_encoder", "text_encoder_2", "text_encoder_2"]
        second = pipe(prompt="a cat", negative_prompt="dog", num_inference_steps=2, output_type="np", seed=1, progress=False)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(calls) == 4
    report = pipe.graph.compile().last_run_report
    assert {"encode_prompt", "time_ids"} <= set(report.hits) and "set_timesteps" in report.ran
    assert np.abs(first.images - second.images).max() > 0


def test_insert_a_latents_editing_block_into_the_loop(sd):
    @block("test_zero_last_step", register=False)
    def zero_last_step(latents: Latents, ctx: RunContext) -> Latents:
        """Zero the latents after the loop's last sampler step."""
        return torch.zeros_like(latents) if ctx.step == ctx.total - 1 else latents

    graph, cm = sd
    graph.nodes["denoise"].body.insert("edit", zero_last_step, ("step.latents", "blend_inpaint.latents"))
    result = run(graph, cm)
    assert not result.latents.any()
