"""The shipped tiny-shapes model: size, format, and that the SD 1.5 preset makes images that
show what the prompts ask for.

The evaluation generates every prompt of :func:`tiny_shapes.evaluate.eval_prompts`
(60 prompts, 20 of them (colour, shape, position) combinations held out of training) in
one batch through ``Pipeline.from_pretrained(shipped folder)`` -- the preset graph, the path
``diffblocks run`` takes -- at 64x64 with 20 DDIM steps and guidance 5, reads each image with
the checker, prints the accuracy table and asserts the issue's thresholds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffblocks.pipeline import Pipeline
from tiny_shapes.evaluate import EvalReport, evaluate
from tiny_shapes.sampler import generate, load_components
from tests.shapes.helpers import SHIPPED

pytestmark = pytest.mark.skipif(not (SHIPPED / "model_index.json").exists(),
                                reason=f"no trained model shipped at {SHIPPED}")

THRESHOLDS = {"colour": 0.90, "shape": 0.80, "position": 0.80}


@pytest.fixture(scope="module")
def pipe() -> Pipeline:
    return Pipeline.from_pretrained(SHIPPED, torch_dtype=torch.float32)


def _preset_images(pipe: Pipeline, prompts: list[str], steps: int, seed: int) -> np.ndarray:
    return pipe(prompt=prompts, num_inference_steps=steps, guidance_scale=5.0, seed=seed,
                output_type="np", progress=False).images


def test_shipped_folder_is_small_and_fp16() -> None:
    from safetensors.torch import load_file

    total = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert total <= 20 * 2**20, f"{total / 2**20:.1f} MB"
    for name in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                 "text_encoder/model.safetensors"):
        assert {t.dtype for t in load_file(SHIPPED / name).values()} == {torch.float16}, name


@pytest.fixture(scope="module")
def report(pipe: Pipeline) -> EvalReport:
    report = evaluate(lambda prompts: _preset_images(pipe, prompts, steps=20, seed=0))
    print("\n" + report.table())
    print("\n".join(report.failures()))
    return report


@pytest.mark.parametrize("attribute", ["colour", "shape", "position"])
def test_images_follow_the_prompts(report: EvalReport, attribute: str) -> None:
    assert len(report.prompts) >= 50 and sum(p.held_out for p in report.prompts) >= 10
    assert report.accuracy[attribute] >= THRESHOLDS[attribute], report.table()


def test_diffusers_pipeline_gives_the_same_images(pipe: Pipeline) -> None:
    diffusers = pytest.importorskip("diffusers")
    prompts = ["a red circle on the left", "a small blue triangle at the top, white background"]
    ours = _preset_images(pipe, prompts, steps=10, seed=3)
    reference = diffusers.StableDiffusionPipeline.from_pretrained(SHIPPED, torch_dtype=torch.float32)
    reference.set_progress_bar_config(disable=True)
    theirs = reference(prompts, num_inference_steps=10, guidance_scale=5.0, output_type="np",
                       generator=torch.Generator().manual_seed(3)).images
    assert np.abs(ours - theirs).max() <= 1e-3


def test_training_sampler_matches_the_preset(pipe: Pipeline) -> None:
    """The training script's sampler (the preset graph on components held in memory) makes what
    the pipeline loaded from the folder makes."""
    parts = load_components(SHIPPED)
    prompts = ["a green square in the centre"]
    ours = generate(parts["unet"], parts["vae"], parts["text_encoder"], parts["tokenizer"], parts["scheduler"],
                    prompts, steps=10, guidance_scale=5.0, seed=3, as_uint8=False)
    assert np.abs(ours - _preset_images(pipe, prompts, steps=10, seed=3)).max() <= 1e-3


def test_shape_word_steers_the_outline_at_mid_noise() -> None:
    """The probe behind docs/shapes.md's "How shape was recovered", on the shipped model."""
    import doctest

    from tiny_shapes import probe

    components = load_components(SHIPPED)
    differences = probe.shape_word_probe(components, timesteps=(300, 500, 700))
    print(differences)
    assert all(d > 0.05 for d in differences.values()), differences
    result = doctest.testmod(probe)
    assert result.attempted > 0 and result.failed == 0

    # A UNet that never sees the caption draws the same outline for both words.
    unet = components["unet"]

    class Deaf(torch.nn.Module):
        device, dtype = unet.device, unet.dtype

        def forward(self, sample, t, encoder_hidden_states):
            return unet(sample, t, encoder_hidden_states=torch.zeros_like(encoder_hidden_states))

    components["unet"] = Deaf()
    assert probe.shape_word_probe(components, timesteps=(500,)) == {500: 0.0}
