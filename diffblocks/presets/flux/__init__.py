"""The Flux.1 family: its stage blocks, its graph builder and its family table.

Importing this package registers the Flux blocks (``encode_prompt_flux``, ``set_timesteps_flux``,
``pack_latents`` ...), so a saved Flux graph file can be read back.

* ``build_flux_graph(workflow=None)``: the family graph (``"flux"``), or ``"flux-text2img"`` /
  ``"flux-img2img"`` with ``workflow=``;
* ``FLUX_PIPELINE_CLASSES``: diffusers pipeline class (``model_index.json`` ``_class_name``) -> family;
* ``FLUX_COMPONENTS``: the components the graph expects, as (library, class) hints;
* ``WORKFLOWS``: workflow name -> the inputs whose presence selects it.
"""

from __future__ import annotations

from pathlib import Path

from . import denoise, guiders, inputs, latents, text, timesteps  # noqa: F401 (registers the blocks)

from .. import stages  # noqa: F401
from ..family import Family
from .graph import FAMILY as _NAME
from .graph import WORKFLOWS, build_flux_graph
from .hints import FLUX_COMPONENTS

__all__ = ["FAMILY", "WORKFLOWS", "FLUX_COMPONENTS", "FLUX_PIPELINE_CLASSES", "build_flux_graph"]

#: diffusers' pipeline classes this family serves -> the family (preset) name.
FLUX_PIPELINE_CLASSES: dict[str, str] = {"FluxPipeline": _NAME, "FluxImg2ImgPipeline": _NAME}

FAMILY = Family(
    name="flux",
    description="Flux.1 (dev and schnell)",
    folder=Path(__file__).parent,
    presets={"flux": build_flux_graph},
    pipeline_classes=FLUX_PIPELINE_CLASSES,
    workflows=WORKFLOWS,
    component_hints={name: f"{lib}.{cls}" for name, (lib, cls) in FLUX_COMPONENTS.items()},
)
