"""One call adds structure control to an SD / SDXL graph: ``with_controlnet``, ``with_t2i_adapter``.

Both return a new graph (the given one is not changed) with explicit edges: new nodes at the top
level (the image preparation, the adapter run) and inside the denoise loop's body (the ControlNet
call, or the adapter features for this step), wired to the body's UNet node and exposed as new
graph inputs named like diffusers' arguments::

    from diffblocks.presets import load_preset
    from diffblocks.presets.controlnet import with_controlnet

    g = with_controlnet(load_preset("sd15-img2img"))   # new inputs: control_image, controlnet_conditioning_scale, ...
    sorted(set(g.inputs) - set(load_preset("sd15-img2img").inputs))

The graph needs: a ``Loop`` node (``denoise``) whose body has the UNet node (``predict_noise``) and
a ``scale_model_input`` node (the ControlNet's input); a node output or graph input ``height`` /
``width`` at the top level; the loop's ``prompt_embeds`` input. Guidance is followed through the
body's ``guidance_active`` output and SDXL's added conditioning through the UNet node's
``text_embeds`` / ``time_ids`` inputs, when present.
"""

from __future__ import annotations

from ...blocks.errors import GraphError, Problem
from ...graph import Graph, Loop

__all__ = ["with_controlnet", "with_t2i_adapter", "CONTROLNET_INPUTS", "ADAPTER_INPUTS"]

#: Inputs ``with_controlnet`` adds (besides the control image): diffusers' argument names.
CONTROLNET_INPUTS = {
    "controlnet_conditioning_scale": "ControlNet residual scale: one number, or one per ControlNet",
    "control_guidance_start": "fraction of the steps after which the ControlNet starts (one, or one per net)",
    "control_guidance_end": "fraction of the steps after which the ControlNet stops (one, or one per net)",
    "guess_mode": "the ControlNet sees only the conditional half of the guidance batch",
}
ADAPTER_INPUTS = {
    "adapter_conditioning_scale": "T2I-Adapter feature scale",
    "adapter_conditioning_factor": "fraction of the steps that get the adapter features",
}
CONTROL_IMAGE = "control image: PIL / NumPy / torch, or a list with one per ControlNet"


def _fail(message: str, node: str | None = None) -> GraphError:
    return GraphError([Problem("bad_structure", message, node)], title="cannot add control")


def _loop(graph: Graph, denoise: str) -> Loop:
    loop = graph.nodes.get(denoise)
    if not isinstance(loop, Loop):
        raise _fail(f"no denoise Loop node named {denoise!r}; pass denoise=<the loop's node name>", denoise)
    return loop


def _source(graph: Graph, target: str) -> str | None:
    return dict((d, s) for s, d in graph.edges).get(target)


def _node_with_block(body: Graph, block_name: str) -> str | None:
    return next((n for n, b in body.nodes.items() if getattr(b, "name", None) == block_name), None)


def _feed(graph: Graph, port: str, target: str) -> None:
    """Feed ``target`` like the graph feeds ``port`` elsewhere: from the node output of that name
    (e.g. ``check_inputs.height``), else from (or as) the graph input of that name."""
    sources = [s for s, d in graph.edges if d.endswith(f".{port}") and s.endswith(f".{port}")]
    if sources:  # the node output that feeds most nodes (check_inputs.height in the SD presets)
        source = max(sources, key=sources.count)
        graph.connect(source, target)
    else:
        graph.expose_input(port, target)


def _feed_like(graph: Graph, like: str, target: str) -> None:
    """Feed ``target`` from whatever feeds ``like`` (an edge, or a graph input)."""
    source = _source(graph, like)
    if source is not None:
        graph.connect(source, target)
        return
    node, port = like.split(".")
    name = next((n for n, gi in graph.graph_inputs.items() if (node, port) in gi.targets), None)
    if name is None:
        raise _fail(f"nothing feeds {like}", node)
    graph.expose_input(name, target)


def _rebuilt_loop(loop: Loop, body: Graph) -> Loop:
    return Loop(body, loop.over, loop.item, loop.carry, name=loop.name, over_type=loop.over_type,
                progress=loop.progress, description=loop.description)


def _step_inputs(body: Graph, node: str, loop: Loop) -> None:
    """Wire a new body node to the step's timestep and the guider's ``guidance_active`` flag."""
    if "t" in body.nodes[node].inputs:
        body.expose_input(loop.item, f"{node}.t")
    flag = next((f"{n}.guidance_active" for n, b in body.nodes.items() if "guidance_active" in b.outputs), None)
    if flag is not None:
        body.connect(flag, f"{node}.guidance_active")


def with_controlnet(
    graph: Graph, *, image_input: str = "control_image", denoise: str = "denoise", predict: str = "predict_noise",
    canny: bool = False,
) -> Graph:
    """``graph`` with ControlNet: ``prepare_control_image`` at the top level (``canny`` first, with
    ``canny=True``), ``controlnet`` (``apply_controlnet``) in the denoise body feeding the UNet node's
    residual inputs, and the inputs ``image_input`` + ``CONTROLNET_INPUTS``. One or several
    ControlNets: the ``controlnet`` component is a model, a ``MultiControlNetModel`` or a list."""
    loop = _loop(graph, denoise)
    body = loop.body.copy()
    if predict not in body.nodes:
        raise _fail(f"the denoise body has no UNet node {predict!r}; pass predict=<its node name>", denoise)
    scale = _node_with_block(body, "scale_model_input")
    if scale is None:
        raise _fail("the denoise body has no scale_model_input node (the ControlNet's input)", denoise)
    body.add("controlnet", "apply_controlnet")
    body.connect(f"{scale}.latent_model_input", "controlnet.latent_model_input")
    _feed_like(body, f"{predict}.encoder_hidden_states", "controlnet.encoder_hidden_states")
    _step_inputs(body, "controlnet", loop)
    for port in ("text_embeds", "time_ids"):  # SDXL's added conditioning
        if _source(body, f"{predict}.{port}") is not None:
            body.connect(_source(body, f"{predict}.{port}"), f"controlnet.{port}")
    body.connect("controlnet.down_block_additional_residuals", f"{predict}.down_block_additional_residuals")
    body.connect("controlnet.mid_block_additional_residual", f"{predict}.mid_block_additional_residual")
    for name in ("control_image", *CONTROLNET_INPUTS):
        body.expose_input(name, f"controlnet.{name}")

    g = graph.copy()
    with g.edit():
        g.replace(denoise, _rebuilt_loop(loop, body.validate()))
        g.add("prepare_control_image", "prepare_control_image")
        _add_image_input(g, "prepare_control_image", image_input, canny)
        for port in ("height", "width"):
            _feed(g, port, f"prepare_control_image.{port}")
        _feed_like(g, f"{denoise}.prompt_embeds", "prepare_control_image.prompt_embeds")
        g.connect("prepare_control_image.control_image", f"{denoise}.control_image")
        for name, description in CONTROLNET_INPUTS.items():
            g.expose_input(name, f"{denoise}.{name}", description=description)
    return g.validate()


def _add_image_input(g: Graph, node: str, image_input: str, canny: bool) -> None:
    if image_input in g.graph_inputs:
        raise _fail(f"the graph already has an input {image_input!r}; pass image_input=<another name>", node)
    if canny:
        g.add("canny", "canny_edges")
        g.connect("canny.image", f"{node}.image")
        g.expose_input(image_input, "canny.image", description="photo whose canny edges steer the image")
    else:
        g.expose_input(image_input, f"{node}.image", description=CONTROL_IMAGE)


def with_t2i_adapter(
    graph: Graph, *, image_input: str = "adapter_image", denoise: str = "denoise", predict: str = "predict_noise",
) -> Graph:
    """``graph`` with a T2I-Adapter: ``prepare_adapter_image`` and ``adapter`` (run once) at the top
    level, ``adapter_features`` in the denoise body feeding the UNet node's
    ``down_intrablock_additional_residuals``, and the inputs ``image_input`` + ``ADAPTER_INPUTS``."""
    loop = _loop(graph, denoise)
    body = loop.body.copy()
    if predict not in body.nodes:
        raise _fail(f"the denoise body has no UNet node {predict!r}; pass predict=<its node name>", denoise)
    body.add("adapter_features", "apply_adapter_features")
    _step_inputs(body, "adapter_features", loop)
    body.connect("adapter_features.down_intrablock_additional_residuals", f"{predict}.down_intrablock_additional_residuals")
    body.expose_input("adapter_state", "adapter_features.adapter_state")
    body.expose_input("adapter_conditioning_factor", "adapter_features.adapter_conditioning_factor")

    g = graph.copy()
    with g.edit():
        g.replace(denoise, _rebuilt_loop(loop, body.validate()))
        g.add("prepare_adapter_image", "prepare_adapter_image")
        g.add("adapter", "encode_adapter_features")
        if image_input in g.graph_inputs:
            raise _fail(f"the graph already has an input {image_input!r}; pass image_input=<another name>", "prepare_adapter_image")
        g.expose_input(image_input, "prepare_adapter_image.image", description="T2I-Adapter control image (PIL / NumPy / torch)")
        for port in ("height", "width"):
            _feed(g, port, f"prepare_adapter_image.{port}")
        g.connect("prepare_adapter_image.adapter_image", "adapter.adapter_image")
        _feed_like(g, f"{denoise}.prompt_embeds", "adapter.prompt_embeds")
        g.connect("adapter.adapter_state", f"{denoise}.adapter_state")
        g.expose_input("adapter_conditioning_scale", "adapter.adapter_conditioning_scale", description=ADAPTER_INPUTS["adapter_conditioning_scale"])
        g.expose_input("adapter_conditioning_factor", f"{denoise}.adapter_conditioning_factor", description=ADAPTER_INPUTS["adapter_conditioning_factor"])
    return g.validate()
