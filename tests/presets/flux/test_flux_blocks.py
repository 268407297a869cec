"""The Flux blocks one by one (packing, position ids, timesteps, input checks, guider ports) and
the family graph's structure (workflows, JSON round trip, components), without model weights."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from diffblocks.graph import Graph, GraphError
from diffblocks.presets.flux import FLUX_COMPONENTS, FLUX_PIPELINE_CLASSES, WORKFLOWS, build_flux_graph
from diffblocks.presets.flux.guiders import prepare_distilled_guidance, prepare_true_cfg
from diffblocks.presets.flux.inputs import check_inputs_flux
from diffblocks.presets.flux.latents import pack, pack_latents, prepare_latent_image_ids, unpack, unpack_latents
from diffblocks.presets.flux.timesteps import set_timesteps_flux
from diffblocks.schedulers import FlowMatchEulerDiscreteScheduler

from .helpers import DEV_SCHEDULER, SCHNELL_SCHEDULER

diffusers = pytest.importorskip("diffusers")
FluxPipeline = diffusers.FluxPipeline
FluxImg2ImgPipeline = diffusers.FluxImg2ImgPipeline

#: A stand-in VAE with Flux's 8x downsampling (four resolution levels); only its config is read.
VAE8 = SimpleNamespace(config=SimpleNamespace(block_out_channels=[128, 256, 512, 512]))


def test_pack_and_unpack_match_diffusers_and_invert_each_other():
    x = torch.randn(2, 16, 6, 10)
    packed = pack(x)
    torch.testing.assert_close(packed, FluxPipeline._pack_latents(x, 2, 16, 6, 10), rtol=0, atol=0)
    torch.testing.assert_close(unpack(packed, 6, 10), x, rtol=0, atol=0)
    torch.testing.assert_close(unpack(packed, 6, 10), FluxPipeline._unpack_latents(packed, 48, 80, 8), rtol=0, atol=0)
    assert pack_latents(latents=packed) is packed  # already packed: passes through
    out = unpack_latents(components={"vae": VAE8}, latents=packed, height=48, width=80)
    torch.testing.assert_close(out, x, rtol=0, atol=0)
    assert unpack_latents(components={"vae": VAE8}, latents=packed, height=48, width=80, output_type="latent") is packed


def test_latent_image_ids_match_diffusers():
    embeds = torch.zeros(1, 4, 8, dtype=torch.float64)
    ids = prepare_latent_image_ids(components={"vae": VAE8}, prompt_embeds=embeds, height=48, width=80)
    expected = FluxPipeline._prepare_latent_image_ids(1, 3, 5, "cpu", torch.float64)
    torch.testing.assert_close(ids, expected, rtol=0, atol=0)


@pytest.mark.parametrize("config", [DEV_SCHEDULER, SCHNELL_SCHEDULER], ids=["dynamic", "fixed"])
@pytest.mark.parametrize("side", [256, 1024])
@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_timesteps_match_diffusers(config, side, strength):
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    steps = 28
    ours = set_timesteps_flux(components={"scheduler": FlowMatchEulerDiscreteScheduler(**config), "vae": VAE8},
                              height=side, width=side, num_inference_steps=steps, strength=strength)
    ref = diffusers.FlowMatchEulerDiscreteScheduler(**config)
    seq = (side // 16) ** 2
    ref.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=calculate_shift(seq, 256, 4096, 0.5, 1.15))
    start = int(max(steps - min(steps * strength, steps), 0))  # diffusers' Flux img2img get_timesteps
    torch.testing.assert_close(ours["timesteps"], ref.timesteps[start:], rtol=0, atol=0)
    assert ours["scheduler_state"].begin_index == start
    if strength == 0.6:
        assert start == 11  # 28 * 0.6 = 16.8 steps kept -> starts at 11 (SD's rule would give 12)


def test_dynamic_shift_depends_on_the_image_size():
    scheduler = FlowMatchEulerDiscreteScheduler(**DEV_SCHEDULER)
    small, large = (set_timesteps_flux(components={"scheduler": scheduler, "vae": VAE8}, height=s, width=s,
                                       num_inference_steps=4)["timesteps"] for s in (256, 1024))
    assert (large[1:] > small[1:]).all()  # more tokens: more of the schedule at high noise


def test_custom_sigmas_set_the_step_count():
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHNELL_SCHEDULER)
    out = set_timesteps_flux(components={"scheduler": scheduler, "vae": VAE8}, height=64, width=64,
                             sigmas=[1.0, 0.5, 0.25], num_inference_steps=28)
    torch.testing.assert_close(out["timesteps"], torch.tensor([1000.0, 500.0, 250.0]))


def _check(**inputs):
    return check_inputs_flux(components={"vae": VAE8}, **{"prompt": "a cat", **inputs})


def test_check_inputs_defaults_per_workflow():
    assert dict(_check()) == {"height": 1024, "width": 1024, "strength": 1.0, "guidance_scale": 3.5}
    assert dict(_check(image=object(), height=512, width=768)) == {
        "height": 512, "width": 768, "strength": 0.6, "guidance_scale": 7.0}
    assert _check(image=object(), strength=0.3, guidance_scale=2.0)["strength"] == 0.3


@pytest.mark.parametrize("inputs, message", [
    ({"height": 520}, "height must be a multiple of 16"),
    ({"prompt_embeds": torch.zeros(1, 4, 8), "pooled_prompt_embeds": torch.zeros(1, 8)}, "prompt or prompt_embeds"),
    ({"prompt": None, "prompt_embeds": torch.zeros(1, 4, 8)}, "pooled_prompt_embeds together"),
    ({"max_sequence_length": 600}, "max_sequence_length must be in"),
    ({"strength": 1.5}, "strength must be in"),
    ({"prompt": None}, "prompt is missing"),
    ({"output_type": "jpg"}, "output_type must be one of"),
])
def test_check_inputs_rejects_bad_inputs(inputs, message):
    with pytest.raises(ValueError, match=message):
        _check(**inputs)


def test_the_two_guiders_are_interchangeable():
    def ports(ports):
        return {name: (str(p.type), repr(p.default)) for name, p in ports.items()}

    assert ports(prepare_distilled_guidance.inputs) == ports(prepare_true_cfg.inputs)
    assert ports(prepare_distilled_guidance.outputs) == ports(prepare_true_cfg.outputs)
    assert prepare_distilled_guidance.components == prepare_true_cfg.components


def test_graph_round_trips_through_json():
    for workflow in (None, *WORKFLOWS):
        graph = build_flux_graph(workflow)
        text = graph.to_json()
        again = Graph.from_json(text)
        assert again.to_json() == text
        assert again.name == ("flux" if workflow is None else f"flux-{workflow}")
    assert "predict_flow" in build_flux_graph().to_mermaid()  # the picture reaches into the loop body


def test_graph_declares_the_flux_components_and_serves_both_pipeline_classes():
    graph = build_flux_graph()
    needed = graph.required_components()
    assert set(needed) == set(FLUX_COMPONENTS)
    for name, (library, cls) in FLUX_COMPONENTS.items():
        if name != "scheduler":  # blocks accept any scheduler; the folder's is the flow-match one
            assert needed[name].expected_name == f"{library}.{cls}"
    assert FLUX_PIPELINE_CLASSES == {"FluxPipeline": "flux", "FluxImg2ImgPipeline": "flux"}


def test_workflows_prune_the_switch():
    text2img, img2img = build_flux_graph("text2img"), build_flux_graph("img2img")
    assert "prepare_image_latents" not in text2img.to_json() and "prepare_image_latents" in img2img.to_json()
    with pytest.raises(ValueError, match="unknown Flux workflow"):
        build_flux_graph("inpaint")


def test_a_missing_component_fails_before_loading():
    with pytest.raises(GraphError, match="transformer"):
        build_flux_graph().validate(components={k: None for k in FLUX_COMPONENTS if k != "transformer"})
