"""Warnings for inputs that would silently do nothing or go wrong quietly (issue 14 item 5).

Called by ``Pipeline.__call__`` after the inputs passed their checks, before the run.
Refusals (a flow-matching sampler on a VP model) are errors elsewhere; these are warnings
because the run is still well defined.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

__all__ = ["warn_no_ops", "LARGE_IMAGE_FACTOR"]

#: An init image with more than this many times the model's native pixel count gets a warning.
LARGE_IMAGE_FACTOR = 4


def warn_no_ops(inputs: Mapping[str, Any], native_size: int | None) -> None:
    """Warn about ``strength`` without ``image`` and an init image far beyond ``native_size``
    (the model's native side in pixels) when no height / width says what to generate."""
    image = inputs.get("image")
    if inputs.get("strength") is not None and image is None:
        warnings.warn("strength has no effect without an init image: text-to-image always runs the whole schedule",
                      stacklevel=3)
    size = _pil_size(image)
    if size is None or native_size is None or (inputs.get("height") and inputs.get("width")):
        return
    width, height = size
    if width * height > LARGE_IMAGE_FACTOR * native_size * native_size:
        warnings.warn(
            f"the init image is {width}x{height}, far larger than the model's native {native_size}x{native_size}: "
            f"the run is slow and the model was not trained at that size; resize it or pass height and width",
            stacklevel=3,
        )


def _pil_size(image: Any) -> tuple[int, int] | None:
    first = image[0] if isinstance(image, (list, tuple)) and image else image
    size = getattr(first, "size", None)
    return tuple(size) if isinstance(size, tuple) and len(size) == 2 else None  # type: ignore[return-value]
