"""Run a preset (through ``Pipeline.from_pretrained``) and the matching diffusers pipeline on the
same folder, inputs and seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch

import diffblocks.schedulers as schedulers
from diffblocks.components import ComponentsManager
from diffblocks.pipeline import Pipeline

#: Max abs difference allowed between our images and diffusers' (fp32, output_type="np").
TOLERANCE = 1e-4

DIFFUSERS_CLASSES = {
    ("sd15", "text2img"): "StableDiffusionPipeline",
    ("sd15", "img2img"): "StableDiffusionImg2ImgPipeline",
    ("sd15", "inpaint"): "StableDiffusionInpaintPipeline",
    ("sdxl", "text2img"): "StableDiffusionXLPipeline",
    ("sdxl", "img2img"): "StableDiffusionXLImg2ImgPipeline",
    ("sdxl", "inpaint"): "StableDiffusionXLInpaintPipeline",
}

_PIPES: dict[tuple[str, str], Any] = {}


def diffusers_pipeline(folder: Path, family: str, workflow: str, scheduler: str | None = None) -> Any:
    import diffusers

    key = (str(folder), workflow)
    if key not in _PIPES:
        cls = getattr(diffusers, DIFFUSERS_CLASSES[(family, workflow)])
        _PIPES[key] = cls.from_pretrained(str(folder))
        _PIPES[key].set_progress_bar_config(disable=True)
    pipe = _PIPES[key]
    pipe.scheduler = make_scheduler(diffusers, folder, scheduler)
    return pipe


def make_scheduler(library: Any, folder: Path, name: str | None) -> Any:
    """The folder's scheduler, or the named sampler built from its config, from ``library``
    (the ``diffusers`` module or ``diffblocks.schedulers``)."""
    base = getattr(library, _saved_class(folder)).from_pretrained(str(folder), subfolder="scheduler")
    if name is None:
        return base
    if name == "euler_a":
        return library.EulerAncestralDiscreteScheduler.from_config(base.config)
    if name == "dpmpp_2m_karras":
        return library.DPMSolverMultistepScheduler.from_config(base.config, use_karras_sigmas=True, algorithm_type="dpmsolver++")
    classes = {"ddim": "DDIMScheduler", "pndm": "PNDMScheduler", "heun": "HeunDiscreteScheduler",
               "lms": "LMSDiscreteScheduler", "unipc": "UniPCMultistepScheduler", "euler": "EulerDiscreteScheduler",
               "ddpm": "DDPMScheduler"}
    if name == "pndm":  # how SD 1.5 checkpoints ship it
        return library.PNDMScheduler.from_config(base.config, skip_prk_steps=True)
    return getattr(library, classes[name]).from_config(base.config)


def _saved_class(folder: Path) -> str:
    import json

    return json.loads((Path(folder) / "scheduler" / "scheduler_config.json").read_text())["_class_name"]


def manager(folder: Path, scheduler: str | None = None) -> ComponentsManager:
    cm = ComponentsManager.from_pretrained(folder)
    cm.set("scheduler", make_scheduler(schedulers, folder, scheduler))
    return cm


def sample_image(size: int = 64, seed: int = 0) -> PIL.Image.Image:
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def sample_mask(size: int = 64) -> PIL.Image.Image:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[size // 4 : 3 * size // 4, size // 8 : size // 2] = 255
    return PIL.Image.fromarray(mask)


def generators(seed: int, count: int | None) -> torch.Generator | list[torch.Generator]:
    """One CPU generator, or ``count`` of them (seeds seed, seed + 1, ...)."""
    if count is None:
        return torch.Generator().manual_seed(seed)
    return [torch.Generator().manual_seed(seed + i) for i in range(count)]


def run_both(
    folder: Path, family: str, workflow: str, *, scheduler: str | None = None, seed: int = 0,
    n_generators: int | None = None, **inputs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """(ours, diffusers') images as float arrays for the same inputs and seed (or list of generators)."""
    inputs = {"num_inference_steps": 2, "output_type": "np", **inputs}
    pipe = diffusers_pipeline(folder, family, workflow, scheduler)
    theirs = pipe(**inputs, generator=generators(seed, n_generators)).images
    ours = Pipeline.from_pretrained(folder)
    assert ours.graph.name == family
    ours.set_scheduler(make_scheduler(schedulers, folder, scheduler))
    images = ours(**inputs, generator=generators(seed, n_generators), progress=False).images
    return np.asarray(images), np.asarray(theirs)
