"""The checker reads colour, shape, position, size and background from images."""

from __future__ import annotations

import numpy as np
import pytest

from tiny_shapes import dataset
from tiny_shapes.checker import check_image


def test_every_clean_render_is_read_correctly() -> None:
    rng = np.random.default_rng(0)
    specs = [dataset.jittered(s, rng) for held in (False, True) for s in dataset.all_specs(held)]
    wrong = []
    for spec in specs:
        found = check_image(dataset.render(spec))
        got = (found.colour, found.shape, found.position, found.size, found.background)
        if got != (spec.colour, spec.shape, spec.position, spec.size, spec.background):
            wrong.append((spec, got))
    assert len(specs) == 540
    assert not wrong, wrong[:5]


def test_accepts_arrays_in_both_ranges_and_is_deterministic() -> None:
    image = dataset.render(dataset.ShapeSpec("cyan", "triangle", "bottom", "small", "gray"))
    as_uint8 = np.asarray(image)
    as_float = as_uint8.astype(np.float32) / 255.0
    a, b, c = check_image(image), check_image(as_uint8), check_image(as_float)
    assert a == b == check_image(as_uint8)  # same input, same answer, features included
    read = lambda d: (d.colour, d.shape, d.position, d.size, d.background)  # noqa: E731
    assert read(a) == read(c)
    assert (a.colour, a.shape, a.position) == ("cyan", "triangle", "bottom")


def test_robust_to_noise_and_a_stray_blob() -> None:
    spec = dataset.ShapeSpec("purple", "circle", "right", "large", "white")
    image = np.asarray(dataset.render(spec)).astype(np.float64)
    noisy = image + np.random.default_rng(1).normal(0, 12, image.shape)
    noisy[5:8, 5:8] = (30, 170, 40)  # a small green speck: not the main object
    found = check_image(np.clip(noisy, 0, 255).astype(np.uint8))
    assert (found.colour, found.shape, found.position, found.size) == ("purple", "circle", "right", "large")


def test_blank_image_has_no_object() -> None:
    found = check_image(np.full((64, 64, 3), 255, dtype=np.uint8))
    assert found.colour is None and found.shape is None and found.background == "white"


def test_rejects_non_rgb() -> None:
    with pytest.raises(ValueError, match="RGB"):
        check_image(np.zeros((64, 64)))
