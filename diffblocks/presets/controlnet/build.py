"""The ControlNet and T2I-Adapter presets: the SD 1.5 / SDXL graphs with one workflow selected and
control added by ``with_controlnet`` / ``with_t2i_adapter``. The source of truth of the JSON files
beside this file (``python tools/build_presets.py`` writes them).

As in diffusers, the control image is ``image`` for text2img (the size defaults to its size) and
``control_image`` for img2img / inpaint (where ``image`` is the picture to change).
"""

from __future__ import annotations

from collections.abc import Callable

from ...graph import Graph
from ..sd.build import build_sd15, build_sdxl
from .graphs import with_controlnet, with_t2i_adapter

__all__ = ["PRESETS", "build_control_preset"]

BASES: dict[str, Callable[[], Graph]] = {"sd15": build_sd15, "sdxl": build_sdxl}
WORKFLOW_INPUTS = {"text2img": {}, "img2img": {"image": True}, "inpaint": {"image": True, "mask_image": True}}
SIZE_DESCRIPTION = "image {} in pixels (default: the size of image)"


def _with_size_node(base: str, workflow: str) -> Graph:
    """The ``workflow`` graph of ``base`` with a node ``control_size`` before ``check_inputs``: the
    size defaults to the ``image`` input's (as in diffusers' ControlNet text2img and inpaint
    pipelines). For text2img, ``image`` is freed for the control image."""
    document = BASES[base]().select(**WORKFLOW_INPUTS[workflow]).to_dict()
    inputs = document["graph"]["inputs"]
    dropped = ("image", "mask_image", "strength") if workflow == "text2img" else ()
    for name in (*dropped, "height", "width"):
        inputs.pop(name, None)
    g = Graph.from_dict(document)
    g.add("control_size", "default_size_from_image")
    for port in ("height", "width"):
        g.connect(f"control_size.{port}", f"check_inputs.{port}")
        g.expose_input(port, f"control_size.{port}", description=SIZE_DESCRIPTION.format(port))
    return g


def build_control_preset(base: str, workflow: str, kind: str) -> Graph:
    """``base`` ("sd15" / "sdxl") with ``workflow`` selected and ``kind`` ("controlnet" / "adapter") added."""
    image_input = "image" if workflow == "text2img" else "control_image"
    g = BASES[base]().select(**WORKFLOW_INPUTS[workflow]) if workflow == "img2img" else _with_size_node(base, workflow)
    if base == "sdxl" and kind == "controlnet":
        # diffusers' SDXL ControlNet pipelines: img2img strength 0.8 (plain SDXL: 0.3), inpaint guidance 5.0 (7.5)
        config = {**g.nodes["check_inputs"].config, "img2img_strength": 0.8, "inpaint_guidance_scale": 5.0}
        g.replace("check_inputs", "check_inputs", config=config)
    g = with_controlnet(g, image_input=image_input) if kind == "controlnet" else with_t2i_adapter(g, image_input=image_input)
    if workflow != "img2img":
        g.expose_input("image", "control_size.image")
    what = "ControlNet" if kind == "controlnet" else "T2I-Adapter"
    model = "Stable Diffusion XL" if base == "sdxl" else "Stable Diffusion 1.5"
    g.name = f"{base}-{kind}" + ("" if workflow == "text2img" else f"-{workflow}")
    g.description = f"{model} {workflow} with {what}"
    return g.validate()


def _preset(base: str, workflow: str, kind: str) -> Callable[[], Graph]:
    def build() -> Graph:
        return build_control_preset(base, workflow, kind)

    build.__qualname__ = build.__name__ = f"build_{base}_{kind}_{workflow}"
    return build


#: Preset name -> builder.
PRESETS: dict[str, Callable[[], Graph]] = {
    **{
        f"{base}-controlnet" + ("" if wf == "text2img" else f"-{wf}"): _preset(base, wf, "controlnet")
        for base in BASES for wf in WORKFLOW_INPUTS
    },
    **{f"{base}-adapter": _preset(base, "text2img", "adapter") for base in BASES},
}
