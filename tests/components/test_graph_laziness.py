"""The manager under the real graph executor: only the branch that runs loads its components."""

from __future__ import annotations

from pathlib import Path

import torch

from diffblocks.blocks import Latents, PromptEmbeds, block
from diffblocks.components import ComponentsManager
from diffblocks.graph import Graph, Switch


@block("test_components_encode", components={"text_encoder": "transformers.CLIPTextModel",
                                             "tokenizer": "transformers.CLIPTokenizer"}, register=False)
def _encode(text_encoder, tokenizer, prompt: str) -> PromptEmbeds:
    ids = torch.tensor([tokenizer(prompt, padding="max_length", max_length=77).input_ids])
    return text_encoder(ids).last_hidden_state


@block("test_components_denoise", components={"unet": "diffusers.UNet2DConditionModel"}, register=False,
       output_name="latents")
def _denoise(unet, prompt_embeds: PromptEmbeds) -> Latents:
    latents = torch.zeros(1, 4, 4, 4)
    out = unet(latents, 10, prompt_embeds)
    return out.sample if hasattr(out, "sample") else out[0]


@block("test_components_decode", components={"vae": "diffusers.AutoencoderKL"}, register=False,
       output_name="latents")
def _decode(vae, latents: Latents, decode: bool) -> Latents:
    out = vae.decode(latents)
    return out.sample if hasattr(out, "sample") else out[0]


@block("test_components_keep", register=False, output_name="latents")
def _keep(latents: Latents) -> Latents:
    return latents


def _graph() -> Graph:
    finish = Switch({"decode": Graph.wrap(_decode), "latent": Graph.wrap(_keep)}, when={"decode": "decode"},
                    default="latent")
    g = Graph("lazy_txt2img")
    g.add("encode", _encode).add("denoise", _denoise).add("finish", finish)
    g.connect("encode.output", "denoise.prompt_embeds")
    g.connect("denoise.latents", "finish.latents")
    g.expose_input("prompt", "encode.prompt")
    g.expose_input("decode", "finish.decode")
    g.expose_output("latents", "finish.latents")
    return g


def test_a_graph_that_never_decodes_never_loads_the_vae(tiny_sd_dir: Path):
    manager = ComponentsManager.from_pretrained(tiny_sd_dir)
    graph = _graph()
    graph.validate(components=manager)  # presence is checked without loading anything
    assert manager.loaded == frozenset()
    with torch.no_grad():
        latents = graph.run(inputs={"prompt": "a photo of a cat"}, components=manager, progress=False).latents
    assert latents.shape == (1, 4, 4, 4)
    assert manager.loaded == {"tokenizer", "text_encoder", "unet"}
    with torch.no_grad():
        images = graph.run(inputs={"prompt": "a photo of a cat", "decode": True}, components=manager,
                           progress=False).latents
    assert images.shape == (1, 3, 8, 8) and "vae" in manager.loaded


def test_memoisation_survives_the_first_load(tiny_sd_dir: Path):
    """Run 1 loads the components while it runs; run 2 must still hit the cache for them."""
    manager = ComponentsManager.from_pretrained(tiny_sd_dir)
    graph = _graph()
    before = manager.component_fingerprint("unet")
    with torch.no_grad():
        first = graph.run(inputs={"prompt": "a photo of a cat"}, components=manager, progress=False).latents
        assert manager.component_fingerprint("unet") == before  # loading does not change it
        second = graph.run(inputs={"prompt": "a photo of a cat"}, components=manager, progress=False).latents
    report = graph.compile().last_run_report
    assert {"encode", "denoise"} <= set(report.hits)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    with torch.no_grad():
        manager["unet"].conv_in.weight.mul_(2)  # an in-place edit (e.g. fusing a LoRA)
    assert manager.component_fingerprint("unet") != before
    with torch.no_grad():
        graph.run(inputs={"prompt": "a photo of a cat"}, components=manager, progress=False)
    report = graph.compile().last_run_report
    assert "encode" in report.hits and "denoise" in report.ran


def test_fingerprint_of_a_set_object_and_unknown_name(tiny_sd_dir: Path):
    manager = ComponentsManager.from_pretrained(tiny_sd_dir)
    module = torch.nn.Linear(2, 2)
    manager.set("extra", module)
    token = manager.component_fingerprint("extra")
    manager.set("extra", torch.nn.Linear(2, 2))
    assert manager.component_fingerprint("extra") != token
    import pytest

    with pytest.raises(KeyError):
        manager.component_fingerprint("nope")
