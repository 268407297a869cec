"""Figures for the shapes model: a training-loss plot and labelled grids of samples.

    >>> from pathlib import Path
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> plot_losses(folder / "loss.png", {"unet": [1.0, 0.5, 0.25]})
    >>> (folder / "loss.png").exists()
    True
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from tiny_shapes.sampler import generate


def plot_losses(path: Path, curves: dict[str, list[float]], width: int = 640, height: int = 240) -> None:
    """Save one panel per loss curve (log scale, with a moving average) as a PNG."""
    panel_w = width // max(len(curves), 1)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for k, (name, values) in enumerate(curves.items()):
        left, top, w, h = k * panel_w + 40, 20, panel_w - 55, height - 50
        draw.rectangle((left, top, left + w, top + h), outline=(120, 120, 120))
        logs = np.log10(np.maximum(np.asarray(values, dtype=np.float64), 1e-8))
        window = max(1, len(logs) // 50)
        smooth = np.convolve(logs, np.ones(window) / window, mode="valid")
        lo, hi = float(logs.min()), float(logs.max()) + 1e-9

        def xy(i: int, v: float, n: int) -> tuple[float, float]:
            return left + w * i / max(n - 1, 1), top + h * (hi - v) / (hi - lo)

        for series, colour in ((logs, (190, 190, 230)), (smooth, (20, 40, 160))):
            if len(series) > 1:
                offset = (len(logs) - len(series)) // 2
                draw.line([xy(i + offset, float(v), len(logs)) for i, v in enumerate(series)], fill=colour, width=1)
        draw.text((left, 4), f"{name} loss (log10), {len(values)} steps", fill="black")
        draw.text((left - 36, top), f"{10 ** hi:.3g}", fill="black")
        draw.text((left - 36, top + h - 10), f"{10 ** lo:.3g}", fill="black")
        draw.text((left, top + h + 6), f"step 0 .. {len(values)}", fill="black")
    image.save(path)


SAMPLE_PROMPTS = [
    "a red circle on the left",
    "a blue square at the top",
    "a yellow triangle at the bottom",
    "a small green circle in the centre",
    "a large purple square on the right",
    "a cyan triangle on the left, black background",
    "a small red square at the bottom, gray background",
    "a large blue triangle in the centre, white background",
    "a green triangle at the top, black background",
    "a yellow square on the right, gray background",
    "a purple circle at the top, white background",
    "a large cyan circle at the bottom, black background",
]


def save_samples(path: Path, components: dict[str, Any], prompts: list[str] = SAMPLE_PROMPTS, seed: int = 0,
                 columns: int = 4, scale: int = 2) -> None:
    """Generate ``prompts`` and save them as a labelled grid (images upscaled ``scale`` times)."""
    images = generate(components["unet"], components["vae"], components["text_encoder"],
                      components["tokenizer"], components["scheduler"], prompts, seed=seed)
    side, label_h, cell_w = 64 * scale, 40, 200
    rows = math.ceil(len(prompts) / columns)
    grid = Image.new("RGB", (columns * cell_w, rows * (side + label_h)), "white")
    draw = ImageDraw.Draw(grid)
    for i, (image, prompt) in enumerate(zip(images, prompts)):
        x, y = (i % columns) * cell_w, (i // columns) * (side + label_h)
        grid.paste(Image.fromarray(image).resize((side, side), Image.Resampling.NEAREST),
                   (x + (cell_w - side) // 2, y))
        draw.multiline_text((x + 4, y + side + 3), "\n".join(textwrap.wrap(prompt, 32)), fill="black", spacing=2)
    grid.save(path)
