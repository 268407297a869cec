"""LoRAs live on components: they work in a hand-built graph with no Pipeline, survive a block
swap, and memoisation re-runs exactly what a changed adapter touches (read from explain())."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from diffblocks.blocks import Latents, NoisePred, PromptEmbeds, block
from diffblocks.components import ComponentsManager
from diffblocks.graph.compose import sequential

from .conftest import TOLERANCE
from .lora_files import TEXT_TARGETS, UNET_TARGETS, diffusers_layout, random_pairs, save


@block("predict_noise_at", version=1, components={"unet": "diffusers.UNet2DConditionModel"}, config={"timestep": 500})
def predict_noise_at(unet: Any, prompt_embeds: PromptEmbeds, latents: Latents, timestep: int = 500) -> NoisePred:
    """One UNet call at a fixed timestep (a toy second stage for a hand-built graph)."""
    return unet(latents, torch.tensor([timestep]), encoder_hidden_states=prompt_embeds).sample


def _reference(pair, ids: torch.Tensor, latents: torch.Tensor, timestep: int) -> torch.Tensor:
    with torch.no_grad():
        embeds = pair.theirs.text_encoder(ids)[0]
        return pair.theirs.unet(latents, timestep, encoder_hidden_states=embeds).sample


def test_lora_in_a_hand_built_graph_and_after_a_block_swap(sd, tmp_path):
    parts = {"unet": random_pairs(sd.theirs.unet, UNET_TARGETS, 4, 11),
             "text_encoder": random_pairs(sd.theirs.text_encoder, TEXT_TARGETS, 4, 12)}
    path = save(diffusers_layout(parts), tmp_path / "g.safetensors")
    graph = sequential([("encode", "encode_prompt"), ("predict", predict_noise_at, {"timestep": 500})],
                       outputs=["output"], name="custom")
    cm = ComponentsManager.from_pretrained(sd.folder, names=["unet", "text_encoder", "tokenizer"], share=False)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    inputs = {"prompt": "a photo of a cat", "latents": latents}
    plain = graph.run(inputs=inputs, components=cm, progress=False)["output"]
    cm.load_lora_weights(path, adapter_name="g")
    cm.set_adapters("g", 0.9)
    sd.theirs.load_lora_weights(str(path), adapter_name="g")
    sd.theirs.set_adapters("g", 0.9)
    ids = sd.theirs.tokenizer(["a photo of a cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    ours = graph.run(inputs=inputs, components=cm, progress=False)["output"]
    assert (ours - plain).abs().max() > 1e-2
    assert (ours - _reference(sd, ids, latents, 500)).abs().max() <= TOLERANCE
    graph.replace("predict", predict_noise_at, config={"timestep": 900})  # swap the stage: adapters stay
    swapped = graph.run(inputs=inputs, components=cm, progress=False)["output"]
    assert (swapped - _reference(sd, ids, latents, 900)).abs().max() <= TOLERANCE
    assert graph.compile().last_run_report.nodes["encode"].status == "hit"


def _statuses(pipe) -> dict[str, tuple[str, list[str]]]:
    report = pipe.graph.compile().last_run_report
    return {n: (r.status, r.reasons) for n, r in report.nodes.items()}


def test_memoisation_follows_adapter_weights(sd, tmp_path):
    unet_file = save(diffusers_layout({"unet": random_pairs(sd.theirs.unet, UNET_TARGETS, 4, 21)}), tmp_path / "u.safetensors")
    te_file = save(diffusers_layout({"text_encoder": random_pairs(sd.theirs.text_encoder, TEXT_TARGETS, 4, 22)}),
                   tmp_path / "t.safetensors")
    pipe = sd.ours
    pipe.load_lora_weights(unet_file, adapter_name="u")
    pipe.load_lora_weights(te_file, adapter_name="t")
    first = sd.run_ours()
    assert np.abs(sd.run_ours() - first).max() == 0
    assert _statuses(pipe)["encode_prompt"][0] == "hit"

    pipe.set_adapters(["u", "t"], [1.0, 0.4])  # only the text-encoder LoRA's weight changes
    te_changed = sd.run_ours()
    status = _statuses(pipe)
    text = pipe.graph.compile().explain()
    assert status["encode_prompt"] == ("miss", ["component text_encoder changed"]), text
    assert status["set_timesteps"][0] == "ran" and status["decode"][1] == ["input latents changed"], text
    assert np.abs(te_changed - first).max() > 1e-3

    pipe.set_adapters(["u", "t"], [0.3, 0.4])  # only the UNet LoRA's weight changes
    unet_changed = sd.run_ours()
    status = _statuses(pipe)
    assert status["encode_prompt"][0] == "hit", pipe.graph.compile().explain()
    assert np.abs(unet_changed - te_changed).max() > 1e-3

    pipe.set_adapters(["u", "t"], [1.0, 1.0])  # back to the first state: same image again
    assert np.abs(sd.run_ours() - first).max() == 0
    pipe.disable_lora()
    sd.run_ours()
    assert _statuses(pipe)["encode_prompt"] == ("miss", ["component text_encoder changed"])
