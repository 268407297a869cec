"""The Flux graph equals diffusers' FluxPipeline / FluxImg2ImgPipeline on tiny random weights saved
by diffusers: same folder, inputs and seed -> images within 1e-4 (fp32, output_type="np").

Two folders: dev-style (guidance embedding, dynamically shifted schedule) and schnell-style (no
guidance embedding, fixed shift). Our pipeline is ``Pipeline(build_flux_graph(),
ComponentsManager.from_pretrained(folder))``, so the whole load path runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffblocks.pipeline import Pipeline
from diffblocks.presets.flux import build_flux_graph
from diffblocks.presets.flux.timesteps import shift_mu

from .helpers import (DEV_SCHEDULER, SCHNELL_SCHEDULER, assert_close, diffusers_pipeline, ours, run_both,
                      sample_image, save_flux)

pytest.importorskip("diffusers")

PROMPT = "a photo of a cat"


@pytest.fixture(scope="module")
def dev_dir(tmp_path_factory):
    return save_flux(tmp_path_factory.mktemp("flux") / "dev", guidance_embeds=True, scheduler=DEV_SCHEDULER)


@pytest.fixture(scope="module")
def schnell_dir(tmp_path_factory):
    return save_flux(tmp_path_factory.mktemp("flux") / "schnell", guidance_embeds=False, scheduler=SCHNELL_SCHEDULER)


@pytest.fixture(scope="module")
def dev_pipe(dev_dir):
    return ours(dev_dir)


@pytest.fixture(scope="module")
def schnell_pipe(schnell_dir):
    return ours(schnell_dir)


# ---- text2img --------------------------------------------------------------------------------
@pytest.mark.parametrize("height, width", [(32, 32), (48, 64)])
def test_dev_text2img_two_resolutions(dev_dir, dev_pipe, height, width):
    ours_img, theirs = run_both(dev_dir, "text2img", pipe=dev_pipe, prompt=PROMPT, height=height, width=width)
    assert ours_img.shape == (1, height, width, 3)
    assert_close(ours_img, theirs)


def test_dynamic_shift_differs_between_the_two_resolutions(dev_pipe):
    config = dev_pipe.components["scheduler"].config
    assert shift_mu(config, 16 * 16) == pytest.approx(0.5)  # 32x32 px -> 256 tokens = base_image_seq_len
    assert shift_mu(config, 24 * 32) > 0.55


def test_dev_guidance_scale_is_a_model_input(dev_dir, dev_pipe):
    low, theirs_low = run_both(dev_dir, "text2img", pipe=dev_pipe, prompt=PROMPT, guidance_scale=1.5)
    high, theirs_high = run_both(dev_dir, "text2img", pipe=dev_pipe, prompt=PROMPT, guidance_scale=6.0)
    assert_close(low, theirs_low)
    assert_close(high, theirs_high)
    assert np.abs(low - high).max() > 1e-3


@pytest.mark.parametrize("height, width", [(32, 32), (48, 64)])
def test_schnell_text2img_two_resolutions(schnell_dir, schnell_pipe, height, width):
    assert_close(*run_both(schnell_dir, "text2img", pipe=schnell_pipe, prompt=PROMPT, height=height, width=width,
                           num_inference_steps=3))


def test_dev_batch_of_two_prompts_two_images_each(dev_dir, dev_pipe):
    ours_img, theirs = run_both(dev_dir, "text2img", pipe=dev_pipe, prompt=["a cat", "a dog on grass"],
                                prompt_2=["a red horse", "the astronaut"], num_images_per_prompt=2,
                                max_sequence_length=16)
    assert ours_img.shape[0] == 4
    assert np.abs(ours_img[0] - ours_img[2]).max() > 1e-3  # the prompts differ
    assert_close(ours_img, theirs)


def test_schnell_num_images_per_prompt_custom_sigmas(schnell_dir, schnell_pipe):
    ours_img, theirs = run_both(schnell_dir, "text2img", pipe=schnell_pipe, prompt=PROMPT, num_images_per_prompt=2,
                                sigmas=[1.0, 0.7, 0.3], num_inference_steps=3)
    assert ours_img.shape[0] == 2
    assert_close(ours_img, theirs)


def test_dev_prompt_embeds_given(dev_dir, dev_pipe):
    pipe = diffusers_pipeline(dev_dir, "text2img")
    embeds, pooled, _ = pipe.encode_prompt("a photo of a dog", None, max_sequence_length=24)
    assert_close(*run_both(dev_dir, "text2img", pipe=dev_pipe, prompt_embeds=embeds, pooled_prompt_embeds=pooled))


def test_output_type_latent_is_packed(dev_dir, dev_pipe):
    ours_lat, theirs = run_both(dev_dir, "text2img", pipe=dev_pipe, prompt=PROMPT, output_type="latent")
    assert ours_lat.shape == (1, 256, 4)
    assert_close(ours_lat, theirs)


# ---- true CFG: one replace -------------------------------------------------------------------
@pytest.mark.parametrize("folder", ["dev_dir", "schnell_dir"])
def test_true_cfg_is_one_replace(folder, request):
    folder = request.getfixturevalue(folder)
    pipe = ours(folder)
    cfg = {"prompt": ["a cat", "a dog"], "negative_prompt": ["grass", "red"], "true_cfg_scale": 4.0,
           "num_images_per_prompt": 2, "max_sequence_length": 16}
    with pytest.raises(ValueError, match="prepare_true_cfg"):  # the distilled guider says what to swap in
        pipe(**cfg, num_inference_steps=2, height=32, width=32, seed=0, progress=False)
    pipe.graph.replace("denoise/guider", "prepare_true_cfg")
    calls = []
    transformer = pipe.components["transformer"]
    hook = transformer.register_forward_pre_hook(lambda m, a, kw: calls.append(kw["hidden_states"].shape[0]), with_kwargs=True)
    try:
        ours_img, theirs = run_both(folder, "text2img", pipe=pipe, **cfg)
    finally:
        hook.remove()
    assert calls == [8, 8]  # [negative, positive] x 4 images in one forward per step
    assert_close(ours_img, theirs)
    plain, _ = run_both(folder, "text2img", pipe=pipe, prompt=["a cat", "a dog"], num_images_per_prompt=2,
                        max_sequence_length=16)
    assert np.abs(plain - ours_img).max() > 1e-3  # the negative prompt changed the images


def test_true_cfg_guider_without_negative_is_one_pass(dev_dir):
    graph = build_flux_graph()
    graph.replace("denoise/guider", "prepare_true_cfg")
    assert_close(*run_both(dev_dir, "text2img", graph=graph, prompt=PROMPT, true_cfg_scale=4.0))


# ---- img2img ---------------------------------------------------------------------------------
@pytest.mark.parametrize("strength", [0.6, 0.75])
def test_dev_img2img(dev_dir, dev_pipe, strength):
    ours_img, theirs = run_both(dev_dir, "img2img", pipe=dev_pipe, prompt=PROMPT, image=sample_image(48, 64),
                                height=48, width=64, strength=strength, num_inference_steps=4)
    assert_close(ours_img, theirs)


def test_schnell_img2img_batch_defaults(schnell_dir, schnell_pipe):
    # strength 0.6 and guidance 7.0 are the img2img defaults on both sides
    ours_img, theirs = run_both(schnell_dir, "img2img", pipe=schnell_pipe, prompt=["a cat", "a dog"],
                                image=sample_image(), num_images_per_prompt=2, num_inference_steps=5)
    assert ours_img.shape[0] == 4
    assert_close(ours_img, theirs)


def test_img2img_true_cfg(dev_dir):
    graph = build_flux_graph("img2img")
    graph.replace("denoise/guider", "prepare_true_cfg")
    assert_close(*run_both(dev_dir, "img2img", graph=graph, prompt=PROMPT, negative_prompt="grass",
                           true_cfg_scale=3.0, image=sample_image(40, 56), strength=0.8, num_inference_steps=3))


def test_pruned_workflow_graphs_run_like_the_family_graph(dev_dir, dev_pipe):
    inputs = {"prompt": PROMPT, "num_inference_steps": 3, "height": 32, "width": 32, "output_type": "np",
              "progress": False}
    for workflow, extra in (("text2img", {}), ("img2img", {"image": sample_image()})):
        pruned = ours(dev_dir, build_flux_graph(workflow))
        assert pruned.graph.name == f"flux-{workflow}"
        a = pruned(**inputs, **extra, seed=3).images
        b = dev_pipe(**inputs, **extra, seed=3).images
        np.testing.assert_array_equal(a, b)


def test_two_runs_in_a_row_match_fresh_runs(dev_dir, dev_pipe):
    inputs = {"prompt": PROMPT, "num_inference_steps": 3, "height": 32, "width": 32, "output_type": "np",
              "progress": False, "image": sample_image(), "strength": 0.7}
    first = dev_pipe(**inputs, seed=1).images
    second = dev_pipe(**inputs, seed=2).images
    again = dev_pipe(**inputs, seed=1).images
    report = dev_pipe.graph.compile().last_run_report
    assert report.nodes["encode_prompt"].status == "hit"  # a new seed re-used the prompt encoding
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(second, ours(dev_dir)(**inputs, seed=2).images)


def test_from_pretrained_with_the_flux_graph_saves_and_reloads(dev_dir, tmp_path):
    """``preset=`` takes the builder's graph; a saved pipeline (graph.json + modular index) reads
    back the Flux graph from its file and draws the same image."""
    from diffblocks.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(dev_dir, preset=build_flux_graph("text2img"))
    inputs = {"prompt": PROMPT, "num_inference_steps": 2, "height": 32, "width": 32, "output_type": "np",
              "progress": False, "seed": 4}
    image = pipe(**inputs).images
    saved = pipe.save_pretrained(tmp_path / "saved")
    again = Pipeline.from_pretrained(saved)
    assert again.graph.name == "flux-text2img"
    np.testing.assert_array_equal(again(**inputs).images, image)


def test_true_cfg_with_embeddings_given_and_generator_list(schnell_dir):
    pipe = diffusers_pipeline(schnell_dir, "text2img")
    embeds, pooled, _ = pipe.encode_prompt("a photo of a dog", None, max_sequence_length=12)
    negative, negative_pooled, _ = pipe.encode_prompt("grass", None, max_sequence_length=12)
    graph = build_flux_graph("text2img")
    graph.replace("denoise/guider", "prepare_true_cfg")
    inputs = {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled, "negative_prompt_embeds": negative,
              "negative_pooled_prompt_embeds": negative_pooled, "true_cfg_scale": 2.5, "num_inference_steps": 2,
              "height": 32, "width": 32, "output_type": "np"}
    theirs = pipe(**inputs, generator=[torch.Generator().manual_seed(7)]).images
    images = ours(schnell_dir, graph)(**inputs, generator=[torch.Generator().manual_seed(7)], progress=False).images
    assert_close(np.asarray(images), np.asarray(theirs))


def test_given_latents_and_generator_list(dev_dir, dev_pipe):
    packed = torch.randn(2, 256, 4, generator=torch.Generator().manual_seed(9))
    inputs = {"prompt": PROMPT, "num_inference_steps": 2, "height": 32, "width": 32, "output_type": "np",
              "num_images_per_prompt": 2}
    pipe = diffusers_pipeline(dev_dir, "text2img")
    for extra in ({"latents": packed}, {"generator": [torch.Generator().manual_seed(s) for s in (1, 2)]}):
        theirs = pipe(**inputs, **extra).images
        extra = {k: v if k != "generator" else [torch.Generator().manual_seed(s) for s in (1, 2)] for k, v in extra.items()}
        assert_close(np.asarray(dev_pipe(**inputs, **extra, progress=False).images), np.asarray(theirs))


@pytest.mark.parametrize("preset", [None, "flux-img2img"])
def test_from_pretrained_picks_the_flux_preset_from_the_index(dev_dir, preset):
    """FluxPipeline's index selects the registered family; an explicit workflow preset still wins."""
    pipe = Pipeline.from_pretrained(dev_dir, preset=preset)
    assert pipe.graph.name == (preset or "flux")
    workflow = "img2img" if preset else "text2img"
    extra = {"image": sample_image(), "strength": 0.6} if preset else {}
    assert_close(*run_both(dev_dir, workflow, pipe=pipe, prompt=PROMPT, **extra))


def test_diffblocks_run_on_a_flux_folder(dev_dir, tmp_path):
    from diffblocks.cli import main
    from diffblocks.cli.run import read_png_metadata

    out = tmp_path / "flux.png"
    code = main(["run", "--model", str(dev_dir), "--prompt", "a cat", "--steps", "2", "--height", "32",
                 "--width", "32", "--out", str(out), "--quiet"])
    assert code == 0 and out.is_file()
    assert '"name": "flux"' in read_png_metadata(out)["graph"]
