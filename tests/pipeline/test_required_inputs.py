"""A selected workflow's required inputs are checked before anything loads (issue 14 item 1)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from diffblocks.blocks.errors import GraphError, InputError
from diffblocks.graph import Graph
from diffblocks.pipeline import Pipeline
from diffblocks.presets import load_preset


@pytest.mark.parametrize(
    "preset, required",
    [("sd15", set()), ("sd15-text2img", set()), ("sd15-img2img", {"image"}), ("sd15-inpaint", {"image", "mask_image"}),
     ("sdxl-img2img", {"image"}), ("sdxl-inpaint", {"image", "mask_image"})],
)
def test_selecting_a_workflow_makes_its_selector_inputs_required(preset, required):
    graph = load_preset(preset)
    assert {n for n, p in graph.inputs.items() if p.required} == required
    again = Graph.from_json(graph.to_json())  # the requirement survives a save (a PNG's graph)
    assert {n for n, p in again.inputs.items() if p.required} == required


def test_img2img_without_image_names_the_input_and_workflow_and_loads_nothing(tiny_sd_dir):
    pipe = Pipeline.from_pretrained(tiny_sd_dir, preset="sd15-img2img")
    with pytest.raises(InputError) as info:
        pipe(prompt="a cat", num_inference_steps=2, progress=False)
    text = str(info.value)
    assert "image" in text and "sd15-img2img" in text and "missing" in text
    assert isinstance(info.value, GraphError) and isinstance(info.value, ValueError)
    assert not any(row.loaded for row in pipe.components.rows()), "nothing may load before the check"


def test_inpaint_without_mask_names_mask_image(tiny_sd_dir):
    pipe = Pipeline.from_pretrained(tiny_sd_dir, preset="sd15-inpaint")
    init = Image.fromarray(np.full((64, 64, 3), 128, np.uint8))
    with pytest.raises(InputError, match="mask_image"):
        pipe(prompt="a cat", image=init, num_inference_steps=2, progress=False)
