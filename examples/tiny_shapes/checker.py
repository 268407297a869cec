"""A deterministic checker that reads a shapes image and says what its main object is.

It needs no model: the background is the border's dominant colour, the object is the
largest connected region of pixels far from it, and colour, shape, position and size are
read from that region with a few geometric measurements:

- colour: the mean colour of the region's core, nearest palette colour (RGB distance);
- shape: a triangle (apex up) has its mass centroid at 2/3 of its height instead of 1/2;
  a square fills its bounding box (fill ratio ~1), a circle fills pi/4 ~ 0.785 of it;
- position: the bounding box's centre relative to the image centre;
- size: the bounding box's longer side.

Edges are antialiased, so pixels are weighted by how far they are from the background
relative to the core ("soft" coverage) instead of thresholded; that keeps the fill ratio
of a 13-pixel square near 1 even when its edges fall on half pixels.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from tiny_shapes.dataset import BACKGROUNDS, COLOURS

_MIN_CONTRAST = 40.0  # RGB distance under which nothing counts as an object
_CENTRE_RADIUS = 7.5  # pixels from the image centre that still read as "centre"
_LARGE_SIDE = 20.0  # bounding-box side (pixels, at 64x64) separating small from large
_TRIANGLE_CENTROID = 0.58  # relative height of the centroid: 0.5 symmetric, 0.667 triangle
_SQUARE_FILL = 0.9  # fill ratio between a circle's 0.785 and a square's 1.0


@dataclass(frozen=True)
class Detection:
    """What the checker read from one image; attributes are None when no object was found."""

    colour: str | None
    shape: str | None
    position: str | None
    size: str | None
    background: str
    features: dict[str, float] = field(default_factory=dict)


def _as_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    # uint8 images and float images in [0, 1] are both accepted; the result is float 0..255.
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float64)
    array = np.asarray(image, dtype=np.float64)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {array.shape}")
    return array * 255.0 if array.max() <= 1.0 else array


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected region of ``mask`` (a boolean image), as a boolean image."""
    labels = np.zeros(mask.shape, dtype=np.int32)
    height, width = mask.shape
    best_label, best_size, label = 0, 0, 0
    for y0, x0 in zip(*np.nonzero(mask)):
        if labels[y0, x0]:
            continue
        label += 1
        labels[y0, x0] = label
        queue, size = deque([(y0, x0)]), 0
        while queue:
            y, x = queue.popleft()
            size += 1
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = label
                    queue.append((ny, nx))
        if size > best_size:
            best_label, best_size = label, size
    return labels == best_label if best_label else np.zeros_like(mask)


def _dilate(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def _nearest(colour: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> str:
    return min(palette, key=lambda name: float(np.sum((colour - np.array(palette[name])) ** 2)))


def check_image(image: Image.Image | np.ndarray) -> Detection:
    """Read the main object of a shapes image (PIL image or (H, W, 3) array, uint8 or [0, 1])."""
    pixels = _as_rgb_array(image)
    height, width, _ = pixels.shape
    scale = width / 64.0

    # Background: the median colour of a 2-pixel border (robust to an object touching it).
    border = np.concatenate(
        [pixels[:2].reshape(-1, 3), pixels[-2:].reshape(-1, 3),
         pixels[:, :2].reshape(-1, 3), pixels[:, -2:].reshape(-1, 3)]
    )
    background = np.median(border, axis=0)
    background_name = _nearest(background, BACKGROUNDS)
    distance = np.linalg.norm(pixels - background, axis=-1)

    peak = float(np.percentile(distance, 99.5))
    if peak < _MIN_CONTRAST:
        return Detection(None, None, None, None, background_name, {"peak": peak})
    # The region is cut at half the contrast (the antialiasing midpoint), then grown by a
    # pixel so that the soft weights below see the whole edge.
    region = _largest_component(distance > 0.5 * peak)
    weight = np.where(_dilate(region), np.clip(distance / peak, 0.0, 1.0), 0.0)

    core = region & (distance > 0.8 * peak)
    colour = pixels[core if core.any() else region].mean(axis=0)

    # Soft extents: how many columns / rows the object covers, counting edges fractionally.
    col_cover, row_cover = weight.max(axis=0), weight.max(axis=1)
    box_w, box_h = float(col_cover.sum()), float(row_cover.sum())
    area = float(weight.sum())
    fill = area / max(box_w * box_h, 1e-6)
    xs, ys = np.nonzero(col_cover > 0.5)[0], np.nonzero(row_cover > 0.5)[0]
    x_mid = (xs.min() + xs.max() + 1) / 2.0
    y_top, y_bottom = float(ys.min()), float(ys.max() + 1)
    y_centroid = float((weight.sum(axis=1) * (np.arange(height) + 0.5)).sum() / area)
    y_rel = (y_centroid - y_top) / max(y_bottom - y_top, 1e-6)

    if y_rel > _TRIANGLE_CENTROID:
        shape = "triangle"
    elif fill > _SQUARE_FILL:
        shape = "square"
    else:
        shape = "circle"

    dx, dy = (x_mid - width / 2) / scale, ((y_top + y_bottom) / 2 - height / 2) / scale
    if max(abs(dx), abs(dy)) < _CENTRE_RADIUS:
        position = "centre"
    elif abs(dx) >= abs(dy):
        position = "left" if dx < 0 else "right"
    else:
        position = "top" if dy < 0 else "bottom"
    size = "large" if max(box_w, box_h) / scale > _LARGE_SIDE else "small"

    features = {"peak": peak, "fill": fill, "y_rel": y_rel, "dx": dx, "dy": dy,
                "box_w": box_w / scale, "box_h": box_h / scale}
    return Detection(_nearest(colour, COLOURS), shape, position, size, background_name, features)
