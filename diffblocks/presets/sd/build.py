"""The SD 1.5 and SDXL preset graphs: the source of truth of ``sd15.json`` and ``sdxl.json``
beside this file (``python tools/build_presets.py`` writes them; a test fails while they are stale).
"""

from __future__ import annotations

from ...graph import Graph, Switch
from .denoise import denoise_body, denoise_body_sdxl, denoise_loop

__all__ = ["build_sd15", "build_sdxl", "latents_switch"]

# Graph inputs shared by both families: (name, default), diffusers' __call__ names and defaults.
COMMON_INPUTS = [
    ("prompt", None), ("negative_prompt", None), ("num_images_per_prompt", 1), ("height", None),
    ("width", None), ("num_inference_steps", 50), ("guidance_rescale", 0.0),
    ("generator", None), ("latents", None), ("image", None), ("mask_image", None), ("strength", None),
    ("output_type", "pil"), ("clip_skip", None), ("eta", 0.0), ("guidance_scale", None),
    ("prompt_embeds", None), ("negative_prompt_embeds", None),
]
SDXL_INPUTS = [
    ("prompt_2", None), ("negative_prompt_2", None), ("original_size", None), ("crops_coords_top_left", [0, 0]),
    ("target_size", None), ("negative_original_size", None), ("negative_crops_coords_top_left", None),
    ("negative_target_size", None), ("pooled_prompt_embeds", None), ("negative_pooled_prompt_embeds", None),
]


DESCRIPTIONS = {
    "prompt": "what to draw: a string, or a list for a batch",
    "negative_prompt": "what to steer away from (one per prompt, or one for all)",
    "num_images_per_prompt": "images made for each prompt",
    "height": "image height in pixels (default: the UNet's sample size; img2img: the image's)",
    "width": "image width in pixels (default: the UNet's sample size; img2img: the image's)",
    "num_inference_steps": "sampler steps over the full schedule (img2img/inpaint run the last `strength` of them)",
    "guidance_scale": "classifier-free guidance scale; <= 1 turns guidance off (default: the workflow's)",
    "guidance_rescale": "rescale guided predictions towards the conditional one's std (0: off)",
    "generator": "torch.Generator (or one per image) that every random draw comes from",
    "latents": "starting noise to use instead of drawing it",
    "image": "input image (PIL / NumPy / torch): img2img, or inpaint with mask_image",
    "mask_image": "inpainting mask, white where the image is repainted (needs image)",
    "strength": "how much of the image to repaint, 0..1 (default: the workflow's)",
    "output_type": "pil, np, pt or latent",
    "clip_skip": "use the text encoder's hidden state this many layers before the last",
    "eta": "DDIM noise weight (other samplers ignore it)",
    "prompt_embeds": "precomputed prompt embeddings, instead of prompt",
    "negative_prompt_embeds": "precomputed negative prompt embeddings, instead of negative_prompt",
    "prompt_2": "prompt for the second text encoder (default: prompt)",
    "negative_prompt_2": "negative prompt for the second text encoder (default: negative_prompt)",
    "original_size": "micro-conditioning: the (height, width) of the training image to imitate",
    "crops_coords_top_left": "micro-conditioning: the (top, left) crop to imitate; (0, 0) for centred subjects",
    "target_size": "micro-conditioning: the (height, width) being made",
    "negative_original_size": "original_size for the unconditional pass",
    "negative_crops_coords_top_left": "crops_coords_top_left for the unconditional pass",
    "negative_target_size": "target_size for the unconditional pass",
    "pooled_prompt_embeds": "precomputed pooled prompt embeddings (with prompt_embeds)",
    "negative_pooled_prompt_embeds": "precomputed pooled negative embeddings (with negative_prompt_embeds)",
}


def _branch(name: str, *nodes: tuple[str, str]) -> Graph:
    """A Switch branch: its nodes, every input exposed under its own name, the five latent outputs."""
    g = Graph(name)
    for node, blk in nodes:
        g.add(node, blk)
    for node, blk in nodes:
        for port in g.nodes[node].inputs:
            g.expose_input(port, f"{node}.{port}")
    for port in ("latents", "noise", "image_latents", "mask", "masked_image_latents"):
        source = next(n for n, _ in nodes if port in g.nodes[n].outputs)
        g.expose_output(port, f"{source}.{port}")
    return g.validate()


def latents_switch() -> Switch:
    """text2img / img2img / inpaint: the only part of the graph that differs by workflow."""
    return Switch(
        {
            "inpaint": _branch("inpaint", ("prepare", "prepare_inpaint_latents")),
            "img2img": _branch("img2img", ("prepare", "prepare_image_latents"), ("no_inpaint", "skip_inpaint_latents")),
            "text2img": _branch("text2img", ("prepare", "prepare_latents"), ("no_inpaint", "skip_inpaint_latents")),
        },
        when={"inpaint": ["image", "mask_image"], "img2img": "image"},
        default="text2img",
        name="prepare_latents",
        description="starting latents: from noise (text2img), a noised image (img2img) or image + mask (inpaint)",
    )


def build_sd15() -> Graph:
    """The SD 1.5 preset graph (``sd15.json``)."""
    return _build("sd15")


def build_sdxl() -> Graph:
    """The SDXL preset graph (``sdxl.json``)."""
    return _build("sdxl")


def _build(family: str) -> Graph:
    sdxl = family == "sdxl"
    g = Graph(family, f"Stable Diffusion {'XL' if sdxl else '1.5'}: text2img, img2img and inpaint, picked by the inputs given")
    # diffusers' defaults per workflow: SDXL img2img / inpaint strength 0.3 / 0.9999 and guidance
    # 5.0 / 7.5 (inpaint); SD strength 0.8 / 1.0 and guidance 7.5.
    sdxl_defaults = {"img2img_strength": 0.3, "inpaint_strength": 0.9999, "default_guidance_scale": 5.0}
    g.add("check_inputs", "check_inputs", config=sdxl_defaults if sdxl else None)
    g.add("encode_prompt", "encode_prompt_sdxl" if sdxl else "encode_prompt")
    g.add("set_timesteps", "set_timesteps")
    g.add("preprocess_image", "preprocess_image")
    g.add("preprocess_mask", "preprocess_mask")
    g.add("encode_image", "encode_image")
    if sdxl:
        g.add("time_ids", "get_add_time_ids")
    g.add("prepare_latents", latents_switch())
    g.add("denoise", denoise_loop(denoise_body_sdxl() if sdxl else denoise_body()))
    g.add("decode", "decode_latents")
    g.add("postprocess", "postprocess_images")

    for node in ("preprocess_image", "preprocess_mask", "prepare_latents") + (("time_ids",) if sdxl else ()):
        g.connect("check_inputs.height", f"{node}.height")
        g.connect("check_inputs.width", f"{node}.width")
    g.connect("check_inputs.strength", "set_timesteps.strength")
    g.connect("check_inputs.strength", "prepare_latents.strength")
    g.connect("check_inputs.guidance_scale", "denoise.guidance_scale")
    g.connect("preprocess_image.init_image", "encode_image.init_image")
    g.connect("preprocess_mask.mask_condition", "encode_image.mask_condition")
    g.connect("preprocess_mask.mask_condition", "prepare_latents.mask_condition")
    g.connect("encode_image.image_moments", "prepare_latents.image_moments")
    g.connect("encode_image.masked_image_moments", "prepare_latents.masked_image_moments")
    g.connect("encode_prompt.prompt_embeds", "prepare_latents.prompt_embeds")
    for port in ("timesteps", "scheduler_state"):
        g.connect(f"set_timesteps.{port}", f"prepare_latents.{port}")
        g.connect(f"set_timesteps.{port}", f"denoise.{port}")
    for port in ("latents", "noise", "image_latents", "mask", "masked_image_latents"):
        g.connect(f"prepare_latents.{port}", f"denoise.{port}")
    embeds = ["prompt_embeds", "negative_prompt_embeds"]
    if sdxl:
        embeds += ["pooled_prompt_embeds", "negative_pooled_prompt_embeds"]
        g.connect("encode_prompt.prompt_embeds", "time_ids.prompt_embeds")
        g.connect("time_ids.add_time_ids", "denoise.add_time_ids")
        g.connect("time_ids.negative_add_time_ids", "denoise.negative_add_time_ids")
    for port in embeds:
        g.connect(f"encode_prompt.{port}", f"denoise.{port}")
    g.connect("denoise.latents", "decode.latents")
    g.connect("decode.images", "postprocess.images")

    inputs = COMMON_INPUTS + (SDXL_INPUTS if sdxl else [])
    fed = {target for _, target in g.edges}
    for name, default in inputs:
        nodes = [node for node, blk in g.nodes.items() if name in blk.inputs and f"{node}.{name}" not in fed]
        ports = [g.nodes[node].inputs[name] for node in nodes]
        # A default every target port already has is not repeated in the file.
        same = all(not p.required and type(p.default) is type(default) and p.default == default for p in ports)
        extra = {} if same else {"default": default}
        g.expose_input(name, *(f"{node}.{name}" for node in nodes), description=DESCRIPTIONS[name], **extra)
    g.expose_output("images", "postprocess.images")
    g.expose_output("latents", "denoise.latents")
    return g.validate()
