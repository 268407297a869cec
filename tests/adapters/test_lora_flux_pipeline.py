"""A LoRA on the Flux preset equals diffusers' FluxPipeline.load_lora_weights + set_adapters
(fp32 images, <= 1e-4): transformer and CLIP text-encoder parts (the BFL and kohya layouts
are checked at the transformer level in test_lora_flux.py). Skipped where the Flux family is not
in the package yet."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("diffblocks.presets.flux")

from tests.presets.flux.helpers import DEV_SCHEDULER, diffusers_pipeline, ours, run_both, save_flux  # noqa: E402

from .lora_files import TEXT_TARGETS, diffusers_layout, random_pairs, save  # noqa: E402

TOLERANCE = 1e-4
FLUX_TARGETS = ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_k_proj", "attn.to_add_out",
                "proj_mlp", "proj_out", "ff.net.2", "norm1.linear")


def test_flux_pipeline_lora_matches_diffusers(tmp_path):
    folder = save_flux(tmp_path / "dev", guidance_embeds=True, scheduler=DEV_SCHEDULER)
    theirs = diffusers_pipeline(folder, "text2img")
    parts = {"transformer": random_pairs(theirs.transformer, FLUX_TARGETS, 4, 41),
             "text_encoder": random_pairs(theirs.text_encoder, TEXT_TARGETS, 4, 42)}
    path = save(diffusers_layout(parts), tmp_path / "flux-lora.safetensors")
    pipe = ours(folder)
    base, _ = run_both(folder, "text2img", pipe=pipe, prompt="a photo of a cat")
    pipe.load_lora_weights(path, adapter_name="f")
    theirs.load_lora_weights(str(path), adapter_name="f")
    try:
        pipe.set_adapters("f", 0.7)
        theirs.set_adapters("f", 0.7)
        with_lora, reference = run_both(folder, "text2img", pipe=pipe, prompt="a photo of a cat")
    finally:
        theirs.unload_lora_weights()
    assert np.abs(with_lora - base).max() > 1e-3
    assert np.abs(with_lora - reference).max() <= TOLERANCE
    assert sorted(pipe.get_list_adapters()) == ["text_encoder", "transformer"]
