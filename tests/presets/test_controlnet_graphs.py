"""``with_controlnet`` / ``with_t2i_adapter`` on a graph built in Python, the canny block, and the
errors a graph without the needed parts gets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diffblocks.blocks.errors import GraphError
from diffblocks.components import ComponentsManager
from diffblocks.graph import Graph
from diffblocks.presets import load_preset
from diffblocks.presets.controlnet import CONTROLNET_INPUTS, with_controlnet, with_t2i_adapter
from diffblocks.presets.controlnet.images import canny_edges
from diffblocks.presets.sd.denoise import denoise_body, denoise_loop
from tests.presets.controlnet_fixtures import control_image, save_control_pipeline


def small_sd_graph() -> Graph:
    """A hand-made SD 1.5 text2img graph: no input checks, size given by the caller."""
    g = Graph("my_sd", "prompt -> latents -> image")
    for node, blk in (("encode", "encode_prompt"), ("timesteps", "set_timesteps"), ("latents", "prepare_latents"),
                      ("decode", "decode_latents"), ("postprocess", "postprocess_images")):
        g.add(node, blk)
    g.add("denoise", denoise_loop(denoise_body()))
    for port in ("timesteps", "scheduler_state"):
        g.connect(f"timesteps.{port}", f"denoise.{port}")
    g.connect("timesteps.scheduler_state", "latents.scheduler_state")
    g.connect("encode.prompt_embeds", "latents.prompt_embeds")
    g.connect("encode.prompt_embeds", "denoise.prompt_embeds")
    g.connect("encode.negative_prompt_embeds", "denoise.negative_prompt_embeds")
    g.connect("latents.latents", "denoise.latents")
    g.connect("denoise.latents", "decode.latents")
    g.connect("decode.images", "postprocess.images")
    g.expose_input("prompt", "encode.prompt")
    g.expose_input("height", "latents.height")
    g.expose_input("width", "latents.width")
    g.expose_input("num_inference_steps", "timesteps.num_inference_steps")
    g.expose_input("generator", "latents.generator", "denoise.generator")
    g.expose_input("output_type", "decode.output_type", "postprocess.output_type")
    g.expose_output("images", "postprocess.images")
    return g.validate()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_control_pipeline("controlnet", "sd15", tmp_path_factory.mktemp("cn-graph"))[0]


def test_with_controlnet_on_a_python_graph_matches_diffusers(folder: Path) -> None:
    import diffusers

    base = small_sd_graph()
    g = with_controlnet(base)
    assert set(g.inputs) - set(base.inputs) == {"control_image", *CONTROLNET_INPUTS}
    assert "controlnet" in g.nodes["denoise"].body.nodes and "controlnet" not in base.nodes["denoise"].body.nodes
    inputs = {"prompt": "a cat", "height": 32, "width": 32, "num_inference_steps": 2, "output_type": "np"}
    ours = g(components=ComponentsManager.from_pretrained(folder), control_image=control_image(), controlnet_conditioning_scale=0.6,
             generator=torch.Generator().manual_seed(0), **inputs)
    ref = diffusers.StableDiffusionControlNetPipeline.from_pretrained(str(folder))
    ref.set_progress_bar_config(disable=True)
    want = ref(image=control_image(), controlnet_conditioning_scale=0.6, generator=torch.Generator().manual_seed(0), **inputs).images
    assert np.abs(np.asarray(ours) - want).max() <= 1e-4


def test_with_controlnet_canny_and_adapter_wire_up() -> None:
    g = with_controlnet(load_preset("sd15-img2img"), canny=True)
    assert ("canny.image", "prepare_control_image.image") in g.edges
    assert g.graph_inputs["control_image"].targets == [("canny", "image")]
    a = with_t2i_adapter(load_preset("sdxl-text2img"))
    assert {"adapter_image", "adapter_conditioning_scale", "adapter_conditioning_factor"} <= set(a.inputs)
    body = a.nodes["denoise"].body
    assert ("adapter_features.down_intrablock_additional_residuals", "predict_noise.down_intrablock_additional_residuals") in body.edges


def test_with_controlnet_names_what_is_missing() -> None:
    with pytest.raises(GraphError, match="no denoise Loop node named 'loop'"):
        with_controlnet(load_preset("sd15"), denoise="loop")
    with pytest.raises(GraphError, match="already has an input 'image'"):
        with_controlnet(load_preset("sd15"), image_input="image")


def test_canny_edges_finds_a_square() -> None:
    image = torch.zeros(1, 3, 32, 32)
    image[:, :, 8:24, 8:24] = 1.0
    edges = canny_edges(image=image)
    assert edges.shape == (1, 3, 32, 32) and set(edges.unique().tolist()) <= {0.0, 1.0}
    assert edges[0, 0, 8:24, 7:9].sum() > 10 and edges[0, 0, 14:18, 14:18].sum() == 0  # border yes, inside no


def test_control_image_count_must_match_the_nets() -> None:
    from diffblocks.models.multi_controlnet import MultiControlNetModel
    from diffblocks.presets.controlnet.images import prepare_control_image

    stand_in = torch.nn.Linear(1, 1)  # the counts are checked before any net runs
    with pytest.raises(ValueError, match="2 ControlNets need 2 control images"):
        prepare_control_image(components={"controlnet": MultiControlNetModel([stand_in, stand_in])}, image=control_image(), height=32,
                              width=32, prompt_embeds=torch.zeros(1, 4, 8))
    with pytest.raises(ValueError, match="3 images for 4 latents"):
        prepare_control_image(components={"controlnet": stand_in}, image=[control_image()] * 3, height=32, width=32,
                              prompt_embeds=torch.zeros(4, 4, 8))
