"""Model families and their preset graphs.

Each family is one package (``sd/`` holds SD 1.x and SDXL) with its stage blocks, the builders
of its preset JSON files and one ``Family`` table; ``stages/`` holds the family-agnostic stage
blocks (guiders, VAE, scheduler steps, latents, image pre/post-processing). A family registers
itself by its module name in ``FAMILY_MODULES`` (plugins: the entry-point group
``diffblocks.families``); everything else learns about families from ``families()``.

``load_preset("sd15")`` is the SD 1.5 graph (its ``prepare_latents`` Switch picks text2img /
img2img / inpaint from the inputs given); ``load_preset("sd15-img2img")`` is that graph with the
Switch resolved to one workflow (``graph.select(image=...)``).
"""

from __future__ import annotations

import functools
from pathlib import Path

from ..graph import Graph
from . import files as _files
from .family import ENTRY_POINT_GROUP, Family

__all__ = [
    "FAMILY_MODULES", "ENTRY_POINT_GROUP", "Family", "families", "family_of", "preset_for_pipeline_class",
    "list_presets", "load_preset", "preset_file",
]

#: The built-in families, one module name each: adding a family is adding its name here.
FAMILY_MODULES: tuple[str, ...] = ("diffblocks.presets.sd", "diffblocks.presets.flux", "diffblocks.presets.controlnet")


@functools.cache
def families() -> dict[str, Family]:
    """Every family by name: the built-in ones, then plugins (importing a family registers its blocks)."""
    from .family import load_families

    return load_families(FAMILY_MODULES)


def family_of(preset: str) -> Family | None:
    """The family a preset (or ``<preset>-<workflow>``) name belongs to, if any."""
    return next((f for f in families().values() if preset in f.preset_names()), None)


def preset_for_pipeline_class(class_name: str) -> str | None:
    """The preset for a diffusers pipeline class name (``model_index.json``'s ``_class_name``)."""
    for family in families().values():
        if class_name in family.pipeline_classes:
            return family.pipeline_classes[class_name]
    return None


def list_presets() -> list[str]:
    """Every preset name: each family's presets (e.g. ``sd15``), their ``<preset>-<workflow>``
    names, and the graph files in ``DIFFBLOCKS_PRESET_PATH`` folders."""
    return _files.list_preset_names(families())


def preset_file(name: str) -> Path:
    """The JSON file a preset name is read from (``GraphError`` with suggestions if unknown)."""
    return _files.find_preset(name, families())[0]


def load_preset(name: str) -> Graph:
    """The preset graph called ``name``: a preset's graph, or ``<preset>-<workflow>`` (e.g.
    ``sd15-img2img``) as that graph with the workflow selected."""
    return _files.read_preset(name, families())
