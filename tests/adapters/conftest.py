"""A diffusers pipeline and our Pipeline on the same tiny folder, with LoRAs unloaded after each test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from diffblocks.pipeline import Pipeline

#: fp32 image tolerance against diffusers (output_type="np", values in [0, 1]).
TOLERANCE = 1e-4
PROMPT = "a photo of a cat"


class Pair:
    """Our pipeline and diffusers' on one folder; ``run_both`` gives both images for one seed."""

    def __init__(self, folder: Path, class_name: str) -> None:
        import diffusers

        self.folder = folder
        self.theirs = getattr(diffusers, class_name).from_pretrained(str(folder))
        self.theirs.set_progress_bar_config(disable=True)
        self.ours = Pipeline.from_pretrained(folder, share=False)

    def run_ours(self, seed: int = 0, **kw: Any) -> np.ndarray:
        args = {"prompt": PROMPT, "num_inference_steps": 2, "output_type": "np", "height": 32, "width": 32, **kw}
        return np.asarray(self.ours(**args, seed=seed, progress=False).images)

    def run_theirs(self, seed: int = 0, **kw: Any) -> np.ndarray:
        args = {"prompt": PROMPT, "num_inference_steps": 2, "output_type": "np", "height": 32, "width": 32, **kw}
        return np.asarray(self.theirs(**args, generator=torch.Generator().manual_seed(seed)).images)

    def both(self, **kw: Any) -> tuple[np.ndarray, np.ndarray]:
        return self.run_ours(**kw), self.run_theirs(**kw)

    def reset(self) -> None:
        self.ours.unload_lora_weights()
        self.theirs.unload_lora_weights()


@pytest.fixture(scope="module")
def sd_pair(tiny_sd_dir: Path) -> Iterator[Pair]:
    yield Pair(tiny_sd_dir, "StableDiffusionPipeline")


@pytest.fixture(scope="module")
def sdxl_pair(tiny_sdxl_dir: Path) -> Iterator[Pair]:
    yield Pair(tiny_sdxl_dir, "StableDiffusionXLPipeline")


@pytest.fixture
def sd(sd_pair: Pair) -> Iterator[Pair]:
    yield sd_pair
    sd_pair.reset()


@pytest.fixture
def sdxl(sdxl_pair: Pair) -> Iterator[Pair]:
    yield sdxl_pair
    sdxl_pair.reset()


# The shipped-LoRA test reads images with the tiny-shapes checker, which lives in examples/.
_EXAMPLES = str(Path(__file__).resolve().parents[2] / "examples")
if _EXAMPLES not in sys.path:
    sys.path.insert(0, _EXAMPLES)
