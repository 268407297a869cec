"""A captioned dataset of simple coloured shapes, generated in code.

Every image is 64x64 RGB: one flat-coloured shape (circle, square or upright triangle) of
one of two sizes, centred near one of five positions, on a flat background. Captions name
the colour, shape and position and, optionally, the size and the background, so both
"a small red circle on the left, white background" and "a red circle on the left" are
in-distribution prompts.

A fixed set of (colour, shape, position) combinations is held out of training
(:data:`HELD_OUT`); the evaluation prompts use them to show that the model composes
attributes instead of memorising combinations. Everything is deterministic from a seed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64

# Colours are well separated in hue (about 60 degrees apart) so that both the model and
# the checker can tell them apart after a lossy VAE round trip.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "yellow": (240, 215, 0),
    "green": (30, 170, 40),
    "cyan": (0, 200, 220),
    "blue": (30, 60, 230),
    "purple": (150, 40, 210),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
POSITIONS: dict[str, tuple[int, int]] = {  # name -> (x, y) of the shape's bounding-box centre
    "left": (17, 32),
    "right": (47, 32),
    "top": (32, 17),
    "bottom": (32, 47),
    "centre": (32, 32),
}
SIZES: dict[str, int] = {"small": 14, "large": 26}  # bounding-box side in pixels

# How a position reads in a caption; "center" is accepted as a spelling of "centre".
POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("on the left",),
    "right": ("on the right",),
    "top": ("at the top",),
    "bottom": ("at the bottom",),
    "centre": ("in the centre", "in the center"),
}

_JITTER_CENTRE = 2  # pixels; keeps positions continuous without blurring the five classes
_JITTER_SIZE = 1
_SUPERSAMPLE = 4  # render 4x larger, then downsample: antialiased edges


def _held_out() -> frozenset[tuple[str, str, str]]:
    # A fixed diagonal through the (colour, shape, position) cube: 10 of 90 combinations,
    # spread so that every colour, shape and position still appears in training, and every
    # pair inside a held-out triple does too (checked by tests/shapes/test_dataset.py).
    colours, positions = list(COLOURS), list(POSITIONS)
    return frozenset(
        (c, s, p)
        for (ci, c), (si, s), (pi, p) in itertools.product(
            enumerate(colours), enumerate(SHAPES), enumerate(positions)
        )
        if (ci + 2 * si + 3 * pi) % 9 == 4
    )


HELD_OUT: frozenset[tuple[str, str, str]] = _held_out()


@dataclass(frozen=True)
class ShapeSpec:
    """One image's content: what the caption describes plus the exact geometry drawn."""

    colour: str
    shape: str
    position: str
    size: str
    background: str
    dx: int = 0  # jitter of the centre, pixels
    dy: int = 0
    dsize: int = 0  # jitter of the side, pixels

    @property
    def combo(self) -> tuple[str, str, str]:
        """The (colour, shape, position) triple that the held-out split is defined on."""
        return (self.colour, self.shape, self.position)


def render(spec: ShapeSpec, image_size: int = IMAGE_SIZE) -> Image.Image:
    """Draw ``spec`` as an antialiased RGB image of ``image_size`` pixels (default 64)."""
    scale = _SUPERSAMPLE * image_size / IMAGE_SIZE
    big = int(image_size * _SUPERSAMPLE)
    image = Image.new("RGB", (big, big), BACKGROUNDS[spec.background])
    draw = ImageDraw.Draw(image)
    cx, cy = POSITIONS[spec.position]
    side = SIZES[spec.size] + spec.dsize
    # Bounding box in supersampled pixels; the shape fills it edge to edge.
    x0, y0 = (cx + spec.dx - side / 2) * scale, (cy + spec.dy - side / 2) * scale
    x1, y1 = x0 + side * scale, y0 + side * scale
    fill = COLOURS[spec.colour]
    if spec.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    elif spec.shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=fill)
    elif spec.shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    else:
        raise ValueError(f"unknown shape {spec.shape!r}; expected one of {SHAPES}")
    return image.resize((image_size, image_size), Image.Resampling.BOX)


def caption(spec: ShapeSpec, rng: np.random.Generator | None = None) -> str:
    """Describe ``spec`` in words.

    With ``rng`` the size and background are each mentioned with probability 1/2 and the
    position phrase is picked among its spellings (training-time augmentation); without it
    the caption is the full, canonical one.
    """
    with_size = with_background = True
    phrase = POSITION_PHRASES[spec.position][0]
    if rng is not None:
        with_size, with_background = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
        options = POSITION_PHRASES[spec.position]
        phrase = options[int(rng.integers(len(options)))]
    words = ["a"] + ([spec.size] if with_size else []) + [spec.colour, spec.shape, phrase]
    text = " ".join(words)
    return f"{text}, {spec.background} background" if with_background else text


def caption_attributes(text: str) -> dict[str, str]:
    """The attributes that a caption names, e.g. ``{"colour": "red", "shape": "circle", ...}``.

    Attributes the caption leaves out (size and background are optional, and a dropped
    caption is "") are missing from the result.

    >>> caption_attributes("a small red circle on the left, white background")["position"]
    'left'
    >>> sorted(caption_attributes("a red circle in the center"))
    ['colour', 'position', 'shape']
    """
    words = set(text.replace(",", " ").split())
    found = {}
    for attribute, names in (("colour", COLOURS), ("shape", SHAPES), ("size", SIZES), ("background", BACKGROUNDS)):
        for name in names:
            if name in words:
                found[attribute] = name
    for position, phrases in POSITION_PHRASES.items():
        if any(phrase.split()[-1] in words for phrase in phrases):
            found["position"] = position
    return found


def all_specs(held_out: bool = False) -> Iterator[ShapeSpec]:
    """Every un-jittered spec of the training split (or, with ``held_out``, of the held-out one)."""
    for colour, shape, position, size, background in itertools.product(
        COLOURS, SHAPES, POSITIONS, SIZES, BACKGROUNDS
    ):
        if ((colour, shape, position) in HELD_OUT) == held_out:
            yield ShapeSpec(colour, shape, position, size, background)


def jittered(spec: ShapeSpec, rng: np.random.Generator) -> ShapeSpec:
    """``spec`` with its centre and side moved by a few random pixels."""
    dx, dy = (int(v) for v in rng.integers(-_JITTER_CENTRE, _JITTER_CENTRE + 1, size=2))
    dsize = int(rng.integers(-_JITTER_SIZE, _JITTER_SIZE + 1))
    return ShapeSpec(spec.colour, spec.shape, spec.position, spec.size, spec.background, dx, dy, dsize)


def training_specs(seed: int, per_combo: int) -> list[ShapeSpec]:
    """``per_combo`` jittered variants of every training spec, in a seeded random order."""
    rng = np.random.default_rng(seed)
    specs = [jittered(spec, rng) for spec in all_specs() for _ in range(per_combo)]
    order = rng.permutation(len(specs))
    return [specs[i] for i in order]


def render_batch(specs: list[ShapeSpec]) -> np.ndarray:
    """Render ``specs`` as a float32 array of shape (N, 3, H, W) in [-1, 1] (the VAE's range)."""
    pixels = np.stack([np.asarray(render(spec), dtype=np.float32) for spec in specs])
    return (pixels / 127.5 - 1.0).transpose(0, 3, 1, 2).copy()


def caption_words() -> list[str]:
    """Every word that a training caption can contain (the tokenizer's vocabulary)."""
    words = {"a", "background", *COLOURS, *SHAPES, *SIZES, *BACKGROUNDS}
    for phrases in POSITION_PHRASES.values():
        for phrase in phrases:
            words.update(phrase.split())
    return sorted(words)
