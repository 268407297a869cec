"""The components loader prepares what it loads for CPU fp32 (diffblocks.models.kernels):
transformers' layers switched to the oneDNN-routed classes, conv weights channels-last, the
state dict unchanged — and nothing of the sort in another dtype or with the routing off."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from diffblocks.components.loading import load_spec
from diffblocks.components.spec import ComponentSpec
from diffblocks.models import kernels
from diffblocks.pipeline import Pipeline


def _linears(module: torch.nn.Module) -> set[type]:
    return {type(m) for m in module.modules() if isinstance(m, torch.nn.Linear)}


def test_pipeline_components_are_prepared(tiny_sd_dir: Path):
    pipe = Pipeline.from_pretrained(tiny_sd_dir)
    assert _linears(pipe.components["text_encoder"]) == {kernels.Linear}  # a transformers CLIP
    for conv in (pipe.components["unet"].conv_in, pipe.components["vae"].decoder.conv_in):
        assert type(conv) is kernels.Conv2d and conv.weight.is_contiguous(memory_format=torch.channels_last)
    # Saved values are the file's, whatever the in-memory layout.
    on_disk = load_file(tiny_sd_dir / "vae" / "diffusion_pytorch_model.safetensors")
    state = pipe.components["vae"].state_dict()
    assert all(torch.equal(state[k], v) and state[k].is_contiguous() for k, v in on_disk.items())


def test_not_in_other_dtypes_or_with_the_routing_off(tiny_sd_dir: Path):
    spec = ComponentSpec(name="text_encoder", type_hint=("transformers", "CLIPTextModel"),
                         pretrained_model_name_or_path=str(tiny_sd_dir), subfolder="text_encoder")
    half = load_spec(spec, torch_dtype=torch.bfloat16)
    assert _linears(half) == {torch.nn.Linear}
    with kernels.cpu_kernels_enabled(False):
        plain = load_spec(spec)
    assert _linears(plain) == {torch.nn.Linear}
    assert _linears(load_spec(spec)) == {kernels.Linear}
