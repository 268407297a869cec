"""How much the shape word steers a model's outline at a given noise level.

A full evaluation needs a trained model and reads a few dozen samples, whose shape accuracy
moves by tens of points from seed to seed. This probe asks one narrower question, in
seconds: given the *same* noisy latents of rendered squares and circles, does the predicted
clean image come out fuller (more square) when the caption says "square" than when it says
"circle"? The answer, the mean fill ratio under the square caption minus that under the
circle caption, is ~0.13 for a model that reads shape words and ~0 for one that draws the
same outline whatever the caption says (docs/shapes.md, "How shape was recovered").

    >>> from diffblocks.cli.run import default_model_path
    >>> from tiny_shapes.sampler import load_components
    >>> differences = shape_word_probe(load_components(default_model_path()), timesteps=(500,))
    >>> differences[500] > 0.05
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tiny_shapes import dataset
from tiny_shapes.checker import check_image
from diffblocks.schedulers.prediction import prediction_for
from tiny_shapes.sampler import decode_latents, encode_prompts

PROBE_COLOURS = ("red", "blue", "green", "yellow")
PROBE_POSITIONS = ("left", "centre", "top")


@torch.no_grad()
def shape_word_probe(components: dict[str, Any], timesteps: tuple[int, ...] = (300, 500, 700),
                     seed: int = 0) -> dict[int, float]:
    """Fill ratio under "square" minus under "circle" captions, per timestep.

    ``components`` is what :func:`tiny_shapes.sampler.load_components` returns. The
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
    latents = vae.encode(images).latent_dist.mean * vae.config.scaling_factor
    generator = torch.Generator().manual_seed(seed)
    contexts = {
        word: encode_prompts(text_encoder, tokenizer, [
            f"a {spec.colour} {word} {dataset.POSITION_PHRASES[spec.position][0]}" for spec in specs])
        for word in ("square", "circle")
    }
    prediction = prediction_for(scheduler.config.prediction_type, "shape_word_probe")
    differences = {}
    for t in timesteps:
        noise = torch.randn(latents.shape, generator=generator).to(device, dtype)
        step = torch.full((len(specs),), t, device=device)
        noisy = scheduler.add_noise(latents, noise, step)
        alpha_bar = scheduler.alphas_cumprod[t].to(dtype)
        fills = {}
        for word, context in contexts.items():
            output = unet(noisy, step, encoder_hidden_states=context).sample
            x0 = prediction.to_denoised(output, noisy, alpha_bar.sqrt(), (1 - alpha_bar).sqrt())
            fills[word] = float(np.mean([check_image(image).features.get("fill", 0.0)
                                         for image in decode_latents(vae, x0)]))
        differences[t] = fills["square"] - fills["circle"]
    return differences
