"""A few steps of every training phase on tiny models: outputs are saved and load back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tiny_shapes.sampler import generate, load_components
from tests.shapes.helpers import training_script


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    script = training_script()
    out = tmp_path_factory.mktemp("tiny-shapes")
    summary = script.train(script.smoke_config(), out, threads=1, run_eval=False)
    return out, summary


def test_writes_diffusers_layout_in_fp16(trained: tuple[Path, dict]) -> None:
    out, summary = trained
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["requires_safety_checker"] is False and index["safety_checker"] == [None, None]
    for name in ("unet", "vae"):
        from safetensors.torch import load_file

        weights = load_file(out / name / "diffusion_pytorch_model.safetensors")
        assert {w.dtype for w in weights.values()} == {torch.float16}
    assert (out / "text_encoder" / "model.safetensors").exists()
    assert (out / "tokenizer" / "tokenizer.json").exists()
    assert (out / "loss.png").exists() and (out / "training_summary.json").exists()
    vae_config = json.loads((out / "vae" / "config.json").read_text())
    assert vae_config["scaling_factor"] == pytest.approx(summary["scaling_factor"])
    assert np.isfinite(summary["final_unet_loss"]) and np.isfinite(summary["final_vae_loss"])


def test_is_reproducible(tmp_path: Path, trained: tuple[Path, dict]) -> None:
    script = training_script()
    again = script.train(script.smoke_config(), tmp_path, threads=1, run_eval=False)
    assert again["final_unet_loss"] == trained[1]["final_unet_loss"]
    assert again["scaling_factor"] == trained[1]["scaling_factor"]


def test_loads_and_generates(trained: tuple[Path, dict]) -> None:
    parts = load_components(trained[0])
    images = generate(parts["unet"], parts["vae"], parts["text_encoder"], parts["tokenizer"],
                      parts["scheduler"], ["a red circle on the left", "a blue square"], steps=2)
    assert images.shape == (2, 64, 64, 3) and images.dtype == np.uint8


def test_diffusers_pipeline_loads_it(trained: tuple[Path, dict]) -> None:
    diffusers = pytest.importorskip("diffusers")
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(trained[0], torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red circle", num_inference_steps=2, output_type="np",
                 generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 64, 64, 3)


def test_sample_grid(trained: tuple[Path, dict], tmp_path: Path) -> None:
    from PIL import Image

    from tiny_shapes.figures import save_samples

    save_samples(tmp_path / "grid.png", load_components(trained[0]), prompts=["a red circle", "a blue square",
                                                                              "a green triangle"], columns=2)
    grid = Image.open(tmp_path / "grid.png")
    assert grid.size == (2 * 200, 2 * (128 + 40))  # two columns, two rows of a 2x image and its label


def test_figures_docstring_example_runs() -> None:
    import doctest

    from tiny_shapes import figures

    result = doctest.testmod(figures)
    assert result.attempted > 0 and result.failed == 0
