"""Tiny Flux folders saved by diffusers (dev-style and schnell-style) and a runner that puts our
Flux graph and diffusers' Flux pipelines on the same folder, inputs and seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffblocks.components import ComponentsManager
from diffblocks.graph import Graph
from diffblocks.pipeline import Pipeline
from diffblocks.presets.flux import build_flux_graph

#: Max abs difference allowed between our images and diffusers' (fp32, output_type="np").
TOLERANCE = 1e-4

#: FLUX.1-dev's scheduler: resolution-dependent shift. FLUX.1-schnell's: a fixed shift of 1.
DEV_SCHEDULER = {"base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15,
                 "shift": 3.0, "use_dynamic_shifting": True}
SCHNELL_SCHEDULER = {"shift": 1.0, "use_dynamic_shifting": False}

DIFFUSERS_CLASSES = {"text2img": "FluxPipeline", "img2img": "FluxImg2ImgPipeline"}


def save_flux(folder: Path, *, guidance_embeds: bool, scheduler: dict[str, Any], seed: int = 0) -> Path:
    """A tiny FluxPipeline folder (tests/components/tiny_pipelines' components) with the
    transformer's guidance embedding on or off and the given scheduler config."""
    import diffusers

    from tests.components.tiny_pipelines import flux_components

    parts = flux_components(seed, tokenizer_dir=folder.parent / f"{folder.name}-t5")
    if guidance_embeds:
        torch.manual_seed(seed + 10)
        # diffusers' from_config drops keys listed in _use_default_values: pass public keys only.
        config = {k: v for k, v in parts["transformer"].config.items() if not k.startswith("_")}
        parts["transformer"] = diffusers.FluxTransformer2DModel(**{**config, "guidance_embeds": True})
    # Random (not zero) output projections, so every block's weights change the image.
    torch.manual_seed(seed + 11)
    with torch.no_grad():
        for name, param in parts["transformer"].named_parameters():
            if name.startswith(("norm_out", "proj_out")):
                param.normal_(0, 0.2)
    parts["scheduler"] = diffusers.FlowMatchEulerDiscreteScheduler(**scheduler)
    diffusers.FluxPipeline(**parts).save_pretrained(str(folder))
    return folder


_PIPES: dict[tuple[str, str], Any] = {}


def diffusers_pipeline(folder: Path, workflow: str) -> Any:
    import diffusers

    key = (str(folder), workflow)
    if key not in _PIPES:
        pipe = getattr(diffusers, DIFFUSERS_CLASSES[workflow]).from_pretrained(str(folder))
        pipe.set_progress_bar_config(disable=True)
        _PIPES[key] = pipe
    return _PIPES[key]


def ours(folder: Path, graph: Graph | None = None) -> Pipeline:
    """Our pipeline on ``folder``: the Flux graph + a ComponentsManager read from the folder's index."""
    return Pipeline(graph if graph is not None else build_flux_graph(), ComponentsManager.from_pretrained(folder))


def run_both(folder: Path, workflow: str, *, graph: Graph | None = None, pipe: Pipeline | None = None,
             seed: int = 0, **inputs: Any) -> tuple[np.ndarray, np.ndarray]:
    """(ours, diffusers') images as float arrays for the same inputs and seed."""
    inputs = {"num_inference_steps": 2, "output_type": "np", "height": 32, "width": 32, **inputs}
    theirs = diffusers_pipeline(folder, workflow)(**inputs, generator=torch.Generator().manual_seed(seed)).images
    pipe = pipe if pipe is not None else ours(folder, graph)
    images = pipe(**inputs, generator=torch.Generator().manual_seed(seed), progress=False).images
    return np.asarray(images), np.asarray(theirs)


def assert_close(ours: np.ndarray, theirs: np.ndarray) -> float:
    assert ours.shape == theirs.shape
    diff = float(np.abs(ours - theirs).max())
    assert diff <= TOLERANCE, diff
    return diff


def sample_image(height: int = 32, width: int = 32, seed: int = 0) -> Any:
    import PIL.Image

    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
