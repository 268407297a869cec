"""The shapes dataset: vocabulary, held-out split, captions, determinism."""

from __future__ import annotations

import itertools

import numpy as np

from tiny_shapes import dataset
from tiny_shapes.dataset import COLOURS, HELD_OUT, POSITIONS, SHAPES, ShapeSpec


def test_vocabulary_meets_the_issue() -> None:
    assert len(COLOURS) >= 6 and len(dataset.BACKGROUNDS) >= 2
    assert {"circle", "square", "triangle"} <= set(SHAPES)
    assert set(POSITIONS) == {"left", "right", "top", "bottom", "centre"}
    assert set(dataset.SIZES) == {"small", "large"}


def test_held_out_triples_are_composable_from_training_pairs() -> None:
    seen = {c for c in itertools.product(COLOURS, SHAPES, POSITIONS) if c not in HELD_OUT}
    assert 8 <= len(HELD_OUT) <= 15
    for colour, shape, position in HELD_OUT:
        assert any(c == colour and s == shape for c, s, _ in seen)
        assert any(c == colour and p == position for c, _, p in seen)
        assert any(s == shape and p == position for _, s, p in seen)


def test_training_split_excludes_held_out() -> None:
    specs = dataset.training_specs(seed=0, per_combo=2)
    assert specs and all(spec.combo not in HELD_OUT for spec in specs)
    held = list(dataset.all_specs(held_out=True))
    assert {spec.combo for spec in held} == set(HELD_OUT)


def test_deterministic_from_seed() -> None:
    a, b = dataset.training_specs(3, 1)[:50], dataset.training_specs(3, 1)[:50]
    assert a == b
    assert a != dataset.training_specs(4, 1)[:50]
    assert np.array_equal(dataset.render_batch(a[:4]), dataset.render_batch(b[:4]))


def test_render_draws_the_shape_where_asked() -> None:
    image = np.asarray(dataset.render(ShapeSpec("red", "square", "left", "large", "white")))
    assert image.shape == (64, 64, 3)
    assert tuple(image[32, 17]) == COLOURS["red"]  # centre of the left position
    assert tuple(image[32, 50]) == (255, 255, 255)


def test_captions() -> None:
    spec = ShapeSpec("red", "circle", "left", "small", "white")
    assert dataset.caption(spec) == "a small red circle on the left, white background"
    rng = np.random.default_rng(0)
    variants = {dataset.caption(spec, rng) for _ in range(64)}
    assert "a red circle on the left" in variants
    assert "a small red circle on the left" in variants
    assert "a red circle on the left, white background" in variants
    centre = ShapeSpec("blue", "triangle", "centre", "large", "black")
    assert {dataset.caption(centre, rng).split(",")[0] for _ in range(64)} >= {
        "a blue triangle in the centre", "a blue triangle in the center"}
    words = set(dataset.caption_words())
    assert all(set(v.replace(",", "").split()) <= words for v in variants)


def test_caption_attributes_reads_back_what_caption_wrote() -> None:
    import doctest

    rng = np.random.default_rng(0)
    for spec in dataset.all_specs():
        text = dataset.caption(spec, rng)
        named = dataset.caption_attributes(text)
        assert {k: named[k] for k in ("colour", "shape", "position")} == {
            "colour": spec.colour, "shape": spec.shape, "position": spec.position}
        assert ("size" in named) == (spec.size in text.split())
        assert ("background" in named) == ("background" in text)
        assert all(getattr(spec, k) == v for k, v in named.items())
    assert dataset.caption_attributes("") == {}
    result = doctest.testmod(dataset)
    assert result.attempted > 0 and result.failed == 0
