"""``diffblocks run --controlnet PATH --control-image IMG [--control-scale S] [--canny]``.

Each flag repeats: one ``--control-image`` (and optionally one ``--control-scale``) per
``--controlnet``; several ControlNets sum their residuals. ``--canny`` turns the photo into canny
edges first (one ControlNet). The graph gets ControlNet through ``with_controlnet`` unless it has
it already (a ControlNet preset, or a replayed graph), so ``--image`` keeps meaning the init image.

A run-option module: ``add_arguments(parser)``, ``settings(args)`` (recorded in the PNG) and
``prepare(pipe, settings)`` (before the inputs are checked); ``control_components`` declares the ControlNet
before the pipeline loads, so a replayed graph that has ControlNet validates.
"""

from __future__ import annotations

import argparse
from typing import Any

from .errors import CliError

# components, models and presets import torch: imported in the hooks, so `--help` stays instant.

__all__ = ["add_arguments", "settings", "load_options", "prepare", "control_components"]

_HINT = ("diffusers", "ControlNetModel")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("ControlNet")
    group.add_argument("--controlnet", action="append", default=[], metavar="PATH",
                       help="ControlNet folder or Hub repo id (repeat for several)")
    group.add_argument("--control-image", action="append", default=[], metavar="IMG", help="control image, one per --controlnet")
    group.add_argument("--control-scale", action="append", type=float, default=[], metavar="S",
                       help="ControlNet scale, one per --controlnet (default 1.0)")
    group.add_argument("--canny", action="store_true", help="use the canny edges of the control image (one ControlNet)")


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ControlNet part of a run's settings (recorded in the PNG), checked for consistency."""
    nets, images, scales = list(args.controlnet), list(args.control_image), list(args.control_scale)
    if not nets and (images or scales or args.canny):
        raise CliError("--control-image / --control-scale / --canny need --controlnet PATH")
    if len(images) != len(nets):
        raise CliError(f"{len(nets)} --controlnet need {len(nets)} --control-image, got {len(images)}")
    if scales and len(scales) != len(nets):
        raise CliError(f"give one --control-scale per --controlnet ({len(nets)}), or none")
    if args.canny and len(nets) != 1:
        raise CliError("--canny works with one --controlnet")
    return {"controlnet": nets, "control_image": images, "control_scale": scales, "canny": bool(args.canny)} if nets else {}


def _has_controlnet(pipe: Any) -> bool:
    return any(getattr(b, "name", None) == "apply_controlnet" for n in pipe.graph.nodes.values() for b in getattr(getattr(n, "body", None), "nodes", {}).values())


def _declare(manager: Any, nets: list[str]) -> None:
    """Component ``controlnet``: the one net, or a ``MultiControlNetModel`` of ``controlnet_0`` …"""
    from ..components import ComponentSpec
    from ..models.multi_controlnet import MultiControlNetModel

    names = ["controlnet"] if len(nets) == 1 else [f"controlnet_{i}" for i in range(len(nets))]
    for name, path in zip(names, nets):
        manager.add(ComponentSpec(name=name, type_hint=_HINT, pretrained_model_name_or_path=path), replace=True)
    if len(nets) > 1:
        manager.set("controlnet", MultiControlNetModel([manager[name] for name in names]))


def control_components(settings: dict[str, Any], torch_dtype: Any, load: dict[str, Any]) -> dict[str, Any]:
    """``Pipeline.from_pretrained`` keyword arguments: ``load`` as it is without ControlNets, else a
    ``components`` manager that declares them (component ``controlnet``; several become one
    ``MultiControlNetModel``), so a replayed graph that has ControlNet validates."""
    from ..components import ComponentsManager

    nets = settings.get("controlnet") or []
    if not nets:
        return load
    manager = ComponentsManager(torch_dtype=torch_dtype, **load)
    _declare(manager, nets)
    return {"components": manager}


def load_options(settings: dict[str, Any], torch_dtype: Any, load: dict[str, Any]) -> dict[str, Any]:
    """The ``run`` hook called before the pipeline loads (see ``diffblocks.cli.run``)."""
    return control_components(settings, torch_dtype, load)


def _load_image(path: str) -> Any:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as err:
        raise CliError(f"cannot read --control-image {path}: {err}") from None


def prepare(pipe: Any, settings: dict[str, Any]) -> None:
    """Give ``pipe`` its ControlNet(s): the graph gets them unless it has them, the components are
    declared unless ``control_components`` did it, and the control image(s) and scale(s) become
    call defaults."""
    from ..presets.controlnet import with_controlnet

    nets = settings.get("controlnet") or []
    if not nets:
        return
    if "controlnet" not in pipe.components:
        _declare(pipe.components, nets)
    if not _has_controlnet(pipe):
        pipe.graph = with_controlnet(pipe.graph, canny=bool(settings.get("canny")))
    pipe.graph.validate(components=pipe.components)
    image_input = "image" if "control_image" not in pipe.graph.inputs else "control_image"
    images = [_load_image(path) for path in settings["control_image"]]
    pipe.defaults[image_input] = images[0] if len(images) == 1 else images
    if settings.get("control_scale"):
        scales = settings["control_scale"]
        pipe.defaults["controlnet_conditioning_scale"] = scales[0] if len(scales) == 1 else scales
