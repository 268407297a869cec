"""Bounds on what a config file or a request may ask us to allocate, checked before allocating.

A small file must not make us build a 46-second UNet or a 40 GB table: every count, size and
image dimension read from a config or a request is compared with a limit here first. The
limits sit far above any real model (SDXL, Flux.1, T5-XXL are all well inside them); a user
with a real reason raises them::

    DIFFBLOCKS_LIMITS="image_pixels=268435456,model_layers=4096" diffblocks run ...

or, in Python, for a block of code::

    from diffblocks import limits
    with limits.raised(image_pixels=16384 * 16384):
        pipe(prompt, height=16384, width=16384)

Every refusal is a :class:`LimitError` (a ``ValueError``) naming the key, the value, the limit
and both ways to raise it.

>>> check("num_train_timesteps", 1000, key="num_train_timesteps")
>>> with raised(num_train_timesteps=10):  # doctest: +IGNORE_EXCEPTION_DETAIL
...     check("num_train_timesteps", 1000, key="num_train_timesteps")
Traceback (most recent call last):
...
diffblocks.limits.LimitError: num_train_timesteps = 1000 is above the limit of 10 ...
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["DEFAULTS", "ENV_VAR", "LimitError", "check", "check_image_request", "current", "raised", "set_limit"]

ENV_VAR = "DIFFBLOCKS_LIMITS"

#: The default limits (name -> largest allowed value).
DEFAULTS: Mapping[str, int] = {
    # schedulers: diffusers' models use 1000 training timesteps
    "num_train_timesteps": 100_000,
    # model configs (UNet, VAE, Flux, CLIP/T5 text encoders)
    "model_blocks": 64,  # down/up blocks of a UNet or VAE (SD: 4)
    "model_layers": 512,  # layers per block, transformer layers (Flux: 38, T5-XXL: 24)
    "model_channels": 65_536,  # channels, hidden sizes, feed-forward widths (T5-XXL d_ff: 10,240)
    "model_heads": 1_024,  # attention heads, head dims (Flux: 24 heads of 128)
    "model_positions": 65_536,  # position embeddings (CLIP: 77, T5: relative)
    "vocab_size": 1_048_576,  # token embeddings (UMT5: 256,384)
    # requests
    "image_side": 16_384,  # pixels along one side
    "image_pixels": 8192 * 8192,  # height * width
    "batch_size": 256,  # prompts x num_images_per_prompt
    "num_inference_steps": 10_000,
}

_overrides: dict[str, int] = {}


class LimitError(ValueError):
    """A config or request asks for more than a limit in :mod:`diffblocks.limits` allows."""


def _from_env() -> dict[str, int]:
    text = os.environ.get(ENV_VAR, "").strip()
    values: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, number = item.partition("=")
        name = name.strip()
        if not sep or name not in DEFAULTS or not number.strip().isdigit():
            raise LimitError(
                f"{ENV_VAR}={text!r}: each item must be NAME=INTEGER with NAME one of {', '.join(DEFAULTS)}"
            )
        values[name] = int(number)
    return values


def current() -> dict[str, int]:
    """The limits in force: defaults, then the environment variable, then :func:`set_limit`/:func:`raised`."""
    return {**DEFAULTS, **_from_env(), **_overrides}


def set_limit(name: str, value: int) -> None:
    """Change one limit for the rest of the process."""
    if name not in DEFAULTS:
        raise LimitError(f"unknown limit {name!r}; limits: {', '.join(DEFAULTS)}")
    _overrides[name] = int(value)


@contextlib.contextmanager
def raised(**values: int) -> Iterator[None]:
    """Use other limits inside a ``with`` block (e.g. ``raised(image_pixels=16384 ** 2)``)."""
    saved = dict(_overrides)
    try:
        for name, value in values.items():
            set_limit(name, value)
        yield
    finally:
        _overrides.clear()
        _overrides.update(saved)


def check(limit: str, value: Any, *, key: str, where: str = "") -> None:
    """Raise :class:`LimitError` when the number ``value`` of ``key`` exceeds limit ``limit``.

    Non-numbers are not this function's business (the config's type check reports them).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    bound = current()[limit]
    if value > bound:
        prefix = f"{where}: " if where else ""
        raise LimitError(
            f"{prefix}{key} = {value} is above the limit of {bound} ({limit}); if you really need it, "
            f"raise it with {ENV_VAR}='{limit}=N' or `with diffblocks.limits.raised({limit}=N):`"
        )


def check_image_request(
    height: int | None = None, width: int | None = None, *, batch: int | None = None, num_inference_steps: int | None = None
) -> None:
    """Check the size of a generation request before any latent is allocated."""
    for key, value in (("height", height), ("width", width)):
        check("image_side", value, key=key)
    if height is not None and width is not None:
        check("image_pixels", height * width, key="height * width")
    check("batch_size", batch, key="batch size (prompts x num_images_per_prompt)")
    check("num_inference_steps", num_inference_steps, key="num_inference_steps")
