"""``Pipeline.save_pretrained``: diffusers opens what we save (classic ``model_index.json`` for stock
presets), we open what diffusers saves, same image within 1e-4 both ways (issue 14 item 8); the
save is atomic, also into the folder the pipeline was loaded from (issue 21 item 3)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from diffblocks.components import CLASSIC_INDEX, MODULAR_INDEX
from diffblocks.pipeline import Pipeline

TOLERANCE = 1e-4  # fp32, output_type="np", max abs difference
STEPS = 2
CLASSES = {"sd": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline"}


def _ours(pipe: Pipeline) -> np.ndarray:
    return pipe(prompt="a cat", num_inference_steps=STEPS, output_type="np", progress=False, seed=0).images


def _theirs(folder, kind: str) -> np.ndarray:
    import diffusers

    pipe = getattr(diffusers, CLASSES[kind]).from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    out = pipe(prompt="a cat", num_inference_steps=STEPS, output_type="np", generator=torch.Generator().manual_seed(0))
    return out.images


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_both_ways_with_diffusers(kind, tiny_sd_dir, tiny_sdxl_dir, tmp_path):
    source = tiny_sd_dir if kind == "sd" else tiny_sdxl_dir
    pipe = Pipeline.from_pretrained(source)
    ours = _ours(pipe)
    assert np.abs(ours - _theirs(source, kind)).max() <= TOLERANCE  # diffusers-saved -> ours

    saved = pipe.save_pretrained(tmp_path / "saved", save_weights=True)
    index = json.loads((saved / CLASSIC_INDEX).read_text())
    assert index["_class_name"] == CLASSES[kind]
    assert np.abs(_theirs(saved, kind) - ours).max() <= TOLERANCE  # ours-saved -> diffusers
    assert np.abs(_ours(Pipeline.from_pretrained(saved)) - ours).max() <= TOLERANCE  # and back to ours


def test_a_swapped_graph_writes_no_classic_index(tiny_sd_dir, tmp_path):
    pipe = Pipeline.from_pretrained(tiny_sd_dir)
    pipe.graph.replace("denoise/guidance", "apply_apg")
    saved = pipe.save_pretrained(tmp_path / "swapped", save_weights=True)
    assert (saved / MODULAR_INDEX).is_file() and not (saved / CLASSIC_INDEX).exists()
    assert Pipeline.from_pretrained(saved).graph.nodes["denoise"].body.nodes["guidance"].name == "apply_apg"


def test_no_weights_no_classic_index(tiny_sd_dir, tmp_path):
    saved = Pipeline.from_pretrained(tiny_sd_dir).save_pretrained(tmp_path / "light")
    assert not (saved / CLASSIC_INDEX).exists()


def test_saving_into_the_folder_it_was_loaded_from(tiny_sd_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_sd_dir, folder)
    (folder / "README.md").write_text("my model card")
    pipe = Pipeline.from_pretrained(folder)  # nothing loaded yet: components would be read lazily
    before = _ours(Pipeline.from_pretrained(tiny_sd_dir))
    pipe.save_pretrained(folder)  # without weights: what lives in the folder must be kept
    assert (folder / "unet").is_dir() and (folder / MODULAR_INDEX).is_file()
    assert (folder / "README.md").read_text() == "my model card"  # what the save does not write stays
    assert np.abs(_ours(Pipeline.from_pretrained(folder)) - before).max() <= TOLERANCE
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary folders left"


def test_a_failed_save_leaves_the_old_folder_loadable(tiny_sd_dir, tmp_path, monkeypatch):
    folder = tmp_path / "model"
    shutil.copytree(tiny_sd_dir, folder)
    listing = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
    pipe = Pipeline.from_pretrained(folder)
    vae = pipe.components["vae"]

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vae, "save_pretrained", broken)
    with pytest.raises(OSError, match="No space left"):
        pipe.save_pretrained(folder, save_weights=True)
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == listing
    assert Pipeline.from_pretrained(folder).graph.name == "sd15"
