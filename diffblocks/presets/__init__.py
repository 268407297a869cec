"""Preset graphs shipped with diffblocks, and workflows picked from them by name.

``load_preset("sd15")`` is the SD 1.5 family graph (its ``prepare_latents`` Switch picks
text2img / img2img / inpaint from the inputs given); ``load_preset("sd15-img2img")`` is that graph
with the Switch resolved to one workflow (``graph.select(image=...)``). The JSON files in this
folder are the source of truth; ``tools/build_presets.py`` wrote the SD ones.
"""

from __future__ import annotations

from ..graph import Graph
from ..graph import presets as _files

__all__ = ["WORKFLOWS", "list_presets", "load_preset"]

#: Workflow name -> the inputs whose presence selects it in a family graph.
WORKFLOWS: dict[str, tuple[str, ...]] = {
    "text2img": (),
    "img2img": ("image",),
    "inpaint": ("image", "mask_image"),
}
#: Families whose graph has the ``prepare_latents`` workflow Switch.
FAMILIES = ("sd15", "sdxl")


def _register_stage_blocks() -> None:
    # The stage modules register their blocks on import; a preset file names them.
    from ..blocks import conditioning, denoise, guiders, images, latents, text, timesteps, vae  # noqa: F401


def list_presets() -> list[str]:
    """Every preset name: the JSON files (e.g. ``sd15``) and ``<family>-<workflow>`` names."""
    names = set(_files.list_presets())
    for family in FAMILIES:
        if family in names:
            names.update(f"{family}-{w}" for w in WORKFLOWS)
    return sorted(names)


def load_preset(name: str) -> Graph:
    """The preset graph called ``name``: a file's graph, or ``<family>-<workflow>`` (text2img,
    img2img, inpaint) as that family's graph with the workflow selected."""
    _register_stage_blocks()
    family, _, workflow = name.rpartition("-")
    if family in FAMILIES and workflow in WORKFLOWS and family in _files.list_presets():
        graph = _files.load_preset(family)
        present = {input_name: True for input_name in WORKFLOWS[workflow]}
        selected = graph.select(**present)
        selected.name = name
        return selected
    return _files.load_preset(name)
