"""The shipped tiny-shapes LoRA (examples/train_tiny_lora.py) loads through load_lora_weights and
makes the shipped model draw a colour it never saw, read by the shapes checker."""

from __future__ import annotations

from pathlib import Path

import torch

from diffblocks.pipeline import Pipeline

ASSETS = Path(__file__).resolve().parents[2] / "diffblocks" / "assets"
LORA = ASSETS / "loras" / "tiny-shapes-orange.safetensors"
PROMPTS = ["a large orange circle in the centre, white background", "a large orange square on the left, white background"]


def test_shipped_lora_draws_orange():
    from tiny_shapes import checker, dataset  # examples/ is on sys.path (tests/adapters/conftest.py)
    pipe = Pipeline.from_pretrained(ASSETS / "tiny-shapes", torch_dtype=torch.float32, share=False)
    pipe.load_lora_weights(LORA, adapter_name="orange")
    assert pipe.get_list_adapters() == {"unet": ["orange"], "text_encoder": ["orange"]}
    images = pipe(prompt=PROMPTS, num_inference_steps=20, guidance_scale=5.0, seed=0, output_type="np",
                  progress=False).images
    dataset.COLOURS["orange"] = (255, 130, 0)  # the palette the LoRA was trained and measured with
    try:
        found = [checker.check_image(image) for image in images]
    finally:
        del dataset.COLOURS["orange"]
    assert [f.colour for f in found] == ["orange", "orange"]
    assert [f.shape for f in found] == ["circle", "square"]
