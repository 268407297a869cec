"""The preset files: generated JSON is checked in, loads, validates, round-trips, and workflows
are picked by name or by the inputs given."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from diffblocks.graph import Graph, Switch
from diffblocks.presets import list_presets, load_preset

from .parity import manager, sample_image

ROOT = Path(__file__).resolve().parents[2]


def _builder():
    spec = importlib.util.spec_from_file_location("build_presets", ROOT / "tools" / "build_presets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checked_in_json_equals_generator():
    assert _builder().main(["--check"]) == 0, "diffblocks/presets/*/*.json are stale: run python tools/build_presets.py"


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_preset_file_round_trips_and_declares_components(family):
    path = ROOT / "diffblocks" / "presets" / "sd" / f"{family}.json"
    graph = Graph.from_json(path)
    assert graph.to_json() + "\n" == path.read_text(encoding="utf-8")
    expected = {"unet", "vae", "text_encoder", "tokenizer", "scheduler"}
    if family == "sdxl":
        expected |= {"text_encoder_2", "tokenizer_2"}
    assert set(graph.required_components()) == expected
    assert graph.required_components()["unet"].expected_name == "diffusers.UNet2DConditionModel"
    assert isinstance(graph.nodes["prepare_latents"], Switch)
    assert {"prompt", "negative_prompt", "generator", "image", "mask_image", "strength", "guidance_scale"} <= set(graph.inputs)
    assert not [n for n, p in graph.inputs.items() if p.required]  # a missing prompt is check_inputs' error


def test_workflows_by_name():
    names = list_presets()
    for family in ("sd15", "sdxl"):
        for workflow in ("text2img", "img2img", "inpaint"):
            assert f"{family}-{workflow}" in names
    picked = {
        w: [b.name for b in load_preset(f"sd15-{w}").nodes["prepare_latents"].nodes.values()]
        for w in ("text2img", "img2img", "inpaint")
    }
    assert picked == {
        "text2img": ["prepare_latents", "skip_inpaint_latents"],
        "img2img": ["prepare_image_latents", "skip_inpaint_latents"],
        "inpaint": ["prepare_inpaint_latents"],
    }


def test_selected_workflow_runs_like_the_family_graph(tiny_sd_dir):
    inputs = {"prompt": "a cat", "num_inference_steps": 2, "output_type": "np", "image": sample_image(), "strength": 0.5}
    cm = manager(tiny_sd_dir)
    family = load_preset("sd15").run(inputs={**inputs, "generator": torch.Generator().manual_seed(0)}, components=cm, progress=False)
    chosen = load_preset("sd15-img2img").run(inputs={**inputs, "generator": torch.Generator().manual_seed(0)}, components=cm, progress=False)
    np.testing.assert_array_equal(family.images, chosen.images)


def test_output_types(tiny_sd_dir):
    graph, cm = load_preset("sd15"), manager(tiny_sd_dir)
    out = {t: graph.run(inputs={"prompt": "a cat", "num_inference_steps": 1, "output_type": t,
                                "generator": torch.Generator().manual_seed(0)}, components=cm, progress=False).images
           for t in ("pil", "np", "pt", "latent")}
    assert out["pil"][0].size == (64, 64) and out["np"].shape == (1, 64, 64, 3)
    assert out["pt"].shape == (1, 3, 64, 64) and out["latent"].shape == (1, 4, 32, 32)
    np.testing.assert_allclose(out["pt"].permute(0, 2, 3, 1).numpy(), out["np"])
    np.testing.assert_array_equal(np.asarray(out["pil"][0]), (out["np"][0] * 255).round().astype("uint8"))


def test_readme_snippet_runs():
    text = (ROOT / "diffblocks" / "presets" / "README.md").read_text(encoding="utf-8")
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(compile(snippet, "presets/README.md", "exec"), scope)
    graph = scope["g"]
    assert graph.nodes["decode"].name == "decode_latents_tiled"
    assert graph.nodes["denoise"].body.nodes["guidance"].config["momentum"] == -0.5
    assert Graph.from_json(graph.to_json()).to_json() == graph.to_json()
