"""``diffblocks run --controlnet PATH --control-image IMG [--control-scale S] [--canny]``.

Each flag repeats: one ``--control-image`` (and optionally one ``--control-scale``) per
``--controlnet``; several ControlNets sum their residuals. ``--canny`` turns the photo into canny
edges first (one ControlNet). The graph gets ControlNet through ``with_controlnet`` unless it has
it already (a ControlNet preset, or a replayed graph), so ``--image`` keeps meaning the init image.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..components import ComponentsManager, ComponentSpec
from ..models.multi_controlnet import MultiControlNetModel
from ..presets.controlnet import with_controlnet

__all__ = ["add_control_arguments", "control_settings", "control_components", "apply_control"]

_HINT = ("diffusers", "ControlNetModel")


def add_control_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("ControlNet")
    group.add_argument("--controlnet", action="append", default=[], metavar="PATH",
                       help="ControlNet folder or Hub repo id (repeat for several)")
    group.add_argument("--control-image", action="append", default=[], metavar="IMG", help="control image, one per --controlnet")
    group.add_argument("--control-scale", action="append", type=float, default=[], metavar="S",
                       help="ControlNet scale, one per --controlnet (default 1.0)")
    group.add_argument("--canny", action="store_true", help="use the canny edges of the control image (one ControlNet)")


def control_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ControlNet part of a run's settings (recorded in the PNG), checked for consistency."""
    nets, images, scales = list(args.controlnet), list(args.control_image), list(args.control_scale)
    if not nets and (images or scales or args.canny):
        raise SystemExit("error: --control-image / --control-scale / --canny need --controlnet PATH")
    if len(images) != len(nets):
        raise SystemExit(f"error: {len(nets)} --controlnet need {len(nets)} --control-image, got {len(images)}")
    if scales and len(scales) != len(nets):
        raise SystemExit(f"error: give one --control-scale per --controlnet ({len(nets)}), or none")
    if args.canny and len(nets) != 1:
        raise SystemExit("error: --canny works with one --controlnet")
    return {"controlnet": nets, "control_image": images, "control_scale": scales, "canny": bool(args.canny)} if nets else {}


def _has_controlnet(pipe: Any) -> bool:
    return any(getattr(b, "name", None) == "apply_controlnet" for n in pipe.graph.nodes.values() for b in getattr(getattr(n, "body", None), "nodes", {}).values())


def control_components(settings: dict[str, Any], torch_dtype: Any, load: dict[str, Any]) -> dict[str, Any]:
    """``Pipeline.from_pretrained`` keyword arguments: ``load`` as it is without ControlNets, else a
    ``components`` manager that declares them (component ``controlnet``; several become one
    ``MultiControlNetModel``), so a replayed graph that has ControlNet validates."""
    nets = settings.get("controlnet") or []
    if not nets:
        return load
    manager = ComponentsManager(torch_dtype=torch_dtype, **load)
    names = ["controlnet"] if len(nets) == 1 else [f"controlnet_{i}" for i in range(len(nets))]
    for name, path in zip(names, nets):
        manager.add(ComponentSpec(name=name, type_hint=_HINT, pretrained_model_name_or_path=path))
    if len(nets) > 1:
        manager.set("controlnet", MultiControlNetModel([manager[name] for name in names]))
    return {"components": manager}


def apply_control(pipe: Any, settings: dict[str, Any], load_image: Any) -> dict[str, Any]:
    """Add ControlNet to ``pipe``'s graph unless it has it; returns the call inputs for ``settings``."""
    nets = settings.get("controlnet") or []
    if not nets:
        return {}
    if not _has_controlnet(pipe):
        pipe.graph = with_controlnet(pipe.graph, canny=bool(settings.get("canny"))).validate(components=pipe.components)
    image_input = "image" if "control_image" not in pipe.graph.inputs else "control_image"
    images = [load_image(path) for path in settings["control_image"]]
    call: dict[str, Any] = {image_input: images[0] if len(images) == 1 else images}
    if settings.get("control_scale"):
        scales = settings["control_scale"]
        call["controlnet_conditioning_scale"] = scales[0] if len(scales) == 1 else scales
    return call
