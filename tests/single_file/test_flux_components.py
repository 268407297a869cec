"""A Flux transformer-only single file (as people share them) in a Flux pipeline whose other
components come from a folder: the transformer component of the folder's ComponentsManager is
replaced by the single-file model, at the component level and through
``Pipeline.from_single_file(file, config=flux_folder)`` with the Flux preset."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffblocks.components import ComponentsManager
from diffblocks.models import FluxTransformer2DModel
from diffblocks.models.single_file.gguf import save_gguf
from tests.single_file.test_models import _inputs, _run


@pytest.mark.parametrize("fmt", ["safetensors", "gguf"])
def test_flux_single_file_replaces_the_folder_transformer(tmp_path: Path, fmt: str) -> None:
    from tests.components.tiny_pipelines import save_pipeline

    folder = save_pipeline("flux", tmp_path / "flux")
    manager = ComponentsManager()
    manager.add_from_index(folder)
    from_folder = manager["transformer"]
    file = (from_folder.save_single_file(tmp_path / "flux.safetensors") if fmt == "safetensors"
            else save_gguf(from_folder, tmp_path / "flux.gguf", "Q8_0"))
    manager.set("transformer", FluxTransformer2DModel.from_single_file(file, config=folder))
    assert manager["transformer"] is not from_folder
    assert {"vae", "text_encoder", "text_encoder_2"} <= set(manager)  # still the folder's
    inputs = _inputs("transformer", from_folder)
    tol = 1e-5 if fmt == "safetensors" else 0.03 * _run("transformer", from_folder, inputs).abs().max().item()
    assert (_run("transformer", manager["transformer"], inputs) - _run("transformer", from_folder, inputs)).abs().max() <= tol
    assert type(manager["vae"]).__name__ == "AutoencoderKL"


def test_component_file_with_a_pipeline_folder(tiny_sd_dir: Path, tmp_path: Path) -> None:
    """``Pipeline.from_single_file(model_file, config=folder)``: the file's model replaces that
    component (here a UNet in an SD folder; a Flux transformer file does the same with a Flux
    folder once the Flux preset is in). Same weights -> the same image as the folder."""
    import torch

    from diffblocks import Pipeline
    from diffblocks.models import UNet2DConditionModel

    folder_pipe = Pipeline.from_pretrained(tiny_sd_dir)
    file = folder_pipe.components["unet"].save_single_file(tmp_path / "unet.safetensors")
    pipe = Pipeline.from_single_file(file, config=tiny_sd_dir)
    assert isinstance(pipe.components["unet"], UNet2DConditionModel)
    assert pipe.components["unet"] is not folder_pipe.components["unet"]
    call = {"prompt": "a photo of a cat", "num_inference_steps": 2, "height": 32, "width": 32, "output_type": "pt",
            "seed": 0, "progress": False}
    assert torch.equal(pipe(**call).images, folder_pipe(**call).images)


@pytest.mark.parametrize("fmt", ["safetensors", "gguf"])
def test_flux_pipeline_from_a_transformer_file_and_a_folder(tiny_flux_dir: Path, tmp_path: Path, fmt: str) -> None:
    """The Flux preset runs with the file's transformer: the same image as the folder's own
    (exactly for safetensors; within Q8_0's error for GGUF)."""
    import numpy as np

    from diffblocks.pipeline import Pipeline

    reference = Pipeline.from_pretrained(tiny_flux_dir)
    transformer = reference.components["transformer"]
    file = (transformer.save_single_file(tmp_path / "flux.safetensors") if fmt == "safetensors"
            else save_gguf(transformer, tmp_path / "flux.gguf", "Q8_0"))
    pipe = Pipeline.from_single_file(file, config=tiny_flux_dir)
    assert pipe.graph.name == "flux" and pipe.components["transformer"] is not transformer
    call = {"prompt": "a cat", "num_inference_steps": 2, "height": 32, "width": 32, "output_type": "np", "seed": 0,
            "progress": False}
    got, want = np.asarray(pipe(**call).images), np.asarray(reference(**call).images)
    assert np.abs(got - want).max() <= (1e-6 if fmt == "safetensors" else 0.05)
    if fmt == "gguf":
        assert np.abs(got - want).max() > 0  # the quantised weights are really used
