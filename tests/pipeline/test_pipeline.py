"""The Pipeline API on a tiny SD folder: preset choice, call arguments, seeds, scheduler swap,
save/reload, workflow names and memoisation across calls."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffblocks.blocks.errors import GraphError
from diffblocks.pipeline import GRAPH_FILE, Pipeline

STEPS = 2


def _run(pipe: Pipeline, **kw):
    args = {"prompt": "a cat", "num_inference_steps": STEPS, "output_type": "np", "progress": False, "seed": 0}
    return pipe(**{**args, **kw}).images


@pytest.fixture()
def pipe(tiny_sd_dir):
    return Pipeline.from_pretrained(tiny_sd_dir)


def test_preset_picked_from_model_index(pipe):
    assert pipe.graph.name == "sd15"
    assert {"unet", "vae", "text_encoder", "tokenizer", "scheduler"} <= set(pipe.components)
    assert pipe.components.loaded == frozenset()  # declared, not loaded


def test_unknown_argument_lists_valid_ones(pipe):
    with pytest.raises(TypeError, match=r"unknown argument\(s\) promt;.*prompt"):
        pipe(promt="a cat")


def test_seed_and_generator_are_the_same_thing(pipe):
    a = _run(pipe, seed=7)
    b = _run(pipe, seed=None, generator=torch.Generator().manual_seed(7))
    c = _run(pipe, seed=8)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    with pytest.raises(TypeError, match="either seed= or generator="):
        _run(pipe, generator=torch.Generator())


def test_second_call_with_new_seed_reuses_prompt_encoding(pipe):
    _run(pipe, seed=1)
    _run(pipe, seed=2)
    report = pipe.graph.compile().last_run_report.nodes
    assert report["encode_prompt"].status == "hit"
    assert report["denoise"].status != "hit"


def test_set_scheduler_by_name_changes_the_image(pipe):
    before = _run(pipe)
    pipe.set_scheduler("DPM++ 2M Karras")
    assert type(pipe.components["scheduler"]).__name__ == "DPMSolverMultistepScheduler"
    assert pipe.components["scheduler"].config.use_karras_sigmas is True
    after = _run(pipe)
    assert before.shape == after.shape and not np.allclose(before, after)


def test_save_and_reload_gives_the_same_image(pipe, tmp_path):
    pipe.set_scheduler("Euler")
    expected = _run(pipe)
    out = pipe.save_pretrained(tmp_path / "saved")
    index = json.loads((out / "modular_model_index.json").read_text())
    assert index["unet"][1] == "UNet2DConditionModel" and index["scheduler"][1] == "EulerDiscreteScheduler"
    assert (out / GRAPH_FILE).is_file() and (out / "scheduler" / "scheduler_config.json").is_file()
    again = Pipeline.from_pretrained(out)
    assert again.graph.to_json() == pipe.graph.to_json()
    np.testing.assert_array_equal(_run(again), expected)


def test_save_weights_makes_a_self_contained_folder(pipe, tmp_path):
    expected = _run(pipe)
    out = pipe.save_pretrained(tmp_path / "full", save_weights=True)
    index = json.loads((out / "modular_model_index.json").read_text())
    assert index["unet"][2]["pretrained_model_name_or_path"] is None and index["unet"][2]["subfolder"] == "unet"
    np.testing.assert_array_equal(_run(Pipeline.from_pretrained(out)), expected)


def test_workflow_by_name_prunes_the_switch(tiny_sd_dir):
    img2img = Pipeline.from_pretrained(tiny_sd_dir, preset="sd15-img2img")
    assert img2img.graph.name == "sd15-img2img"
    assert not any(type(b).__name__ == "Switch" for b in img2img.graph.nodes.values())
    with pytest.raises(GraphError, match="sd15-sketch"):
        Pipeline.from_pretrained(tiny_sd_dir, preset="sd15-sketch")


def test_unknown_pipeline_class_names_the_fix(tiny_sd_dir, tmp_path):
    folder = _copy_with_index(tiny_sd_dir, tmp_path / "odd", _class_name="SomethingElsePipeline")
    with pytest.raises(GraphError, match="pass preset="):
        Pipeline.from_pretrained(folder)
    assert Pipeline.from_pretrained(folder, preset="sd15").graph.name == "sd15"

def _copy_with_index(src, dst, **changes):
    dst.mkdir()
    index = json.loads((src / "model_index.json").read_text())
    for name, value in index.items():
        if isinstance(value, list) and value[0] is not None:
            (dst / name).symlink_to(src / name)
    (dst / "model_index.json").write_text(json.dumps({**index, **changes}))
    return dst


def test_index_config_configures_the_nodes_that_declare_it(tiny_sdxl_dir, tmp_path):
    on = Pipeline.from_pretrained(tiny_sdxl_dir)
    assert on.graph.name == "sdxl"
    assert on.graph.nodes["encode_prompt"].config["force_zeros_for_empty_prompt"] is True
    off = Pipeline.from_pretrained(_copy_with_index(tiny_sdxl_dir, tmp_path / "xl", force_zeros_for_empty_prompt=False))
    assert off.graph.nodes["encode_prompt"].config["force_zeros_for_empty_prompt"] is False
    a = _run(on, guidance_scale=5.0)
    b = _run(off, guidance_scale=5.0)
    assert not np.allclose(a, b)  # zero vs encoded-empty negative embeddings


def test_save_without_weights_writes_the_scheduler_config_only(pipe, tmp_path):
    out = pipe.save_pretrained(tmp_path / "light")
    index = json.loads((out / "modular_model_index.json").read_text())
    assert (out / "scheduler" / "scheduler_config.json").is_file()
    assert index["scheduler"][2]["subfolder"] == "scheduler" and index["scheduler"][2]["pretrained_model_name_or_path"] is None
    assert not (out / "unet").exists() and index["unet"][2]["pretrained_model_name_or_path"] is not None
    assert pipe.components.loaded <= {"scheduler"}  # saving the index loads no model
