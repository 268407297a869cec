"""How much the shape word steers a model's outline at a given noise level.

A full evaluation needs a trained model and reads a few dozen samples, whose shape accuracy
moves by tens of points from seed to seed. This probe asks one narrower question, in
seconds: given the *same* noisy latents of rendered squares and circles, does the predicted
clean image come out fuller (more square) when the caption says "square" than when it says
"circle"? The answer, the mean fill ratio under the square caption minus that under the
circle caption, is ~0.13 for a model that reads shape words and ~0 for one that draws the
same outline whatever the caption says (docs/shapes.md, "How shape was recovered").

    >>> from diffblocks.cli.run import default_model_path
    >>> from diffblocks.shapes.sampler import load_components
    >>> differences = shape_word_probe(load_components(default_model_path()), timesteps=(500,))
    >>> differences[500] > 0.05
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from diffblocks.shapes import dataset
from diffblocks.shapes.checker import check_image
from diffblocks.shapes.sampler import encode_prompts

PROBE_COLOURS = ("red", "blue", "green", "yellow")
PROBE_POSITIONS = ("left", "centre", "top")


def _predicted_x0(scheduler: Any, noisy: torch.Tensor, output: torch.Tensor, t: int) -> torch.Tensor:
    alpha_bar = scheduler.alphas_cumprod[t].to(noisy.dtype)
    a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    prediction = scheduler.config.prediction_type
    if prediction == "v_prediction":
        return a * noisy - s * output
    if prediction == "epsilon":
        return (noisy - s * output) / a
    if prediction == "sample":
        return output
    raise ValueError(f"shape_word_probe: unknown prediction_type {prediction!r}")


@torch.no_grad()
def shape_word_probe(components: dict[str, Any], timesteps: tuple[int, ...] = (300, 500, 700),
                     seed: int = 0) -> dict[int, float]:
    """Fill ratio under "square" minus under "circle" captions, per timestep.

    ``components`` is what :func:`diffblocks.shapes.sampler.load_components` returns. The
    inputs are 24 large shapes (12 squares, 12 circles; four colours, three positions, white
    background) noised to each ``t`` with one seeded draw; both captions see the same
    noisy latents.
    """
    unet, vae, text_encoder, tokenizer, scheduler = (
        components[k] for k in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"))
    specs = [dataset.ShapeSpec(colour, shape, position, "large", "white")
             for colour in PROBE_COLOURS for position in PROBE_POSITIONS for shape in ("square", "circle")]
    device, dtype = unet.device, unet.dtype
    images = torch.from_numpy(dataset.render_batch(specs)).to(device, dtype)
    scaling = vae.config.scaling_factor
    latents = vae.encode(images).latent_dist.mean * scaling
    generator = torch.Generator().manual_seed(seed)
    contexts = {
        word: encode_prompts(text_encoder, tokenizer, [
            f"a {spec.colour} {word} {dataset.POSITION_PHRASES[spec.position][0]}" for spec in specs])
        for word in ("square", "circle")
    }
    differences = {}
    for t in timesteps:
        noise = torch.randn(latents.shape, generator=generator).to(device, dtype)
        alpha_bar = scheduler.alphas_cumprod[t].to(dtype)
        noisy = alpha_bar.sqrt() * latents + (1 - alpha_bar).sqrt() * noise
        fills = {}
        for word, context in contexts.items():
            output = unet(noisy, torch.full((len(specs),), t, device=device), encoder_hidden_states=context).sample
            decoded = vae.decode(_predicted_x0(scheduler, noisy, output, t) / scaling).sample
            pixels = ((decoded.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).float().cpu().numpy()
            fills[word] = float(np.mean([check_image(p).features.get("fill", 0.0) for p in pixels]))
        differences[t] = fills["square"] - fills["circle"]
    return differences
