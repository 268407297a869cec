"""Measure whether generated images show what their prompts ask for.

:func:`eval_prompts` is a fixed list of prompts whose (colour, shape, position) is known,
a third of them combinations held out of training; :func:`evaluate` generates them with
any ``generate_fn`` (our sampler, a preset pipeline, diffusers), reads each image with the
checker and reports the accuracy of each attribute, overall and on the held-out prompts.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from tiny_shapes.checker import Detection, check_image
from tiny_shapes.dataset import BACKGROUNDS, COLOURS, HELD_OUT, POSITION_PHRASES, POSITIONS, SHAPES, SIZES

ATTRIBUTES = ("colour", "shape", "position")


@dataclass(frozen=True)
class EvalPrompt:
    """A prompt and the attributes its image must show."""

    prompt: str
    colour: str
    shape: str
    position: str
    held_out: bool


def _phrase(position: str) -> str:
    return POSITION_PHRASES[position][0]


def eval_prompts(n_seen: int = 40) -> list[EvalPrompt]:
    """Every held-out combination twice (short and full caption) plus ``n_seen`` seen ones.

    Seen combinations are spread evenly over the training combinations; the full captions
    cycle through sizes and backgrounds. The list is fixed: the same on every call.
    """
    sizes, backgrounds = list(SIZES), list(BACKGROUNDS)
    prompts: list[EvalPrompt] = []
    for i, (colour, shape, position) in enumerate(sorted(HELD_OUT)):
        prompts.append(EvalPrompt(f"a {colour} {shape} {_phrase(position)}", colour, shape, position, True))
        full = (f"a {sizes[i % 2]} {colour} {shape} {_phrase(position)}, "
                f"{backgrounds[i % 3]} background")
        prompts.append(EvalPrompt(full, colour, shape, position, True))
    seen = [c for c in itertools.product(COLOURS, SHAPES, POSITIONS) if c not in HELD_OUT]
    stride = len(seen) / n_seen
    for i in range(n_seen):
        colour, shape, position = seen[int(i * stride)]
        text = f"a {colour} {shape} {_phrase(position)}"
        if i % 2:
            text = f"a {sizes[i // 2 % 2]} {colour} {shape} {_phrase(position)}, {backgrounds[i % 3]} background"
        prompts.append(EvalPrompt(text, colour, shape, position, False))
    return prompts


@dataclass
class EvalReport:
    """Per-prompt detections and the accuracy of each attribute."""

    prompts: list[EvalPrompt]
    detections: list[Detection]
    accuracy: dict[str, float] = field(default_factory=dict)
    held_out_accuracy: dict[str, float] = field(default_factory=dict)

    def table(self) -> str:
        """The accuracies as a small text table (all prompts, held-out, seen)."""
        seen = _accuracy([p for p in self.prompts if not p.held_out],
                         [d for p, d in zip(self.prompts, self.detections) if not p.held_out])
        n_held = sum(p.held_out for p in self.prompts)
        rows = [("all", len(self.prompts), self.accuracy), ("held-out", n_held, self.held_out_accuracy),
                ("seen", len(self.prompts) - n_held, seen)]
        lines = ["| prompts | n | colour | shape | position |", "|---|---|---|---|---|"]
        for name, n, acc in rows:
            lines.append(f"| {name} | {n} | " + " | ".join(f"{acc[a]:.1%}" for a in ATTRIBUTES) + " |")
        return "\n".join(lines)

    def failures(self) -> list[str]:
        """One line per prompt whose image got an attribute wrong."""
        lines = []
        for prompt, found in zip(self.prompts, self.detections):
            wrong = [f"{a}={getattr(found, a)}" for a in ATTRIBUTES if getattr(found, a) != getattr(prompt, a)]
            if wrong:
                lines.append(f"{prompt.prompt!r}: " + ", ".join(wrong))
        return lines


def _accuracy(prompts: Sequence[EvalPrompt], detections: Sequence[Detection]) -> dict[str, float]:
    if not prompts:
        return {a: float("nan") for a in ATTRIBUTES}
    return {a: float(np.mean([getattr(d, a) == getattr(p, a) for p, d in zip(prompts, detections)]))
            for a in ATTRIBUTES}


def evaluate(generate_fn: Callable[[list[str]], Sequence[Any]],
             prompts: Sequence[EvalPrompt] | None = None) -> EvalReport:
    """Generate an image per prompt with ``generate_fn`` and score it with the checker.

    ``generate_fn`` takes the list of prompt strings and returns one image per prompt
    (PIL images or (H, W, 3) arrays, uint8 or floats in [0, 1]).
    """
    prompts = list(prompts) if prompts is not None else eval_prompts()
    images = generate_fn([p.prompt for p in prompts])
    if len(images) != len(prompts):
        raise ValueError(f"generate_fn returned {len(images)} images for {len(prompts)} prompts")
    detections = [check_image(image) for image in images]
    held = [i for i, p in enumerate(prompts) if p.held_out]
    return EvalReport(
        prompts, detections, _accuracy(prompts, detections),
        _accuracy([prompts[i] for i in held], [detections[i] for i in held]),
    )
