"""The Flux family graph (text2img and img2img, picked by whether ``image`` is given).

::

    check_inputs ─► encode_prompt ─► set_timesteps ─► latent_ids ─► preprocess_image ─► encode_image
       ─► prepare_latents (Switch: noise | noised image, then 2x2 packing) ─► denoise (Loop)
       ─► unpack ─► decode ─► postprocess

Example (the whole load path: index -> components -> graph)::

    from diffblocks.components import ComponentsManager
    from diffblocks.pipeline import Pipeline
    from diffblocks.presets.flux import build_flux_graph

    pipe = Pipeline(build_flux_graph(), ComponentsManager.from_pretrained("path/to/flux-folder"))
    image = pipe(prompt="a cat", height=512, width=512, seed=0).images[0]
    pipe.graph.replace("denoise/guider", "prepare_true_cfg")   # true CFG with a negative prompt
"""

from __future__ import annotations

from ...blocks.base import Block
from ..stages.images import postprocess_images, preprocess_image
from ..stages.latents import prepare_image_latents, prepare_latents
from ..stages.vae import decode_latents, encode_image
from ...graph import Graph, Switch
from .denoise import flux_denoise_loop
from .inputs import check_inputs_flux
from .latents import pack_latents, prepare_latent_image_ids, unpack_latents
from .text import MAX_SEQUENCE_LENGTH, encode_prompt_flux
from .timesteps import set_timesteps_flux

__all__ = ["FAMILY", "WORKFLOWS", "FLUX_INPUTS", "build_flux_graph", "latents_switch"]

FAMILY = "flux"
#: Workflow name -> the inputs whose presence selects it.
WORKFLOWS: dict[str, tuple[str, ...]] = {"text2img": (), "img2img": ("image",)}

#: Graph inputs: diffusers' FluxPipeline / FluxImg2ImgPipeline __call__ names, defaults, descriptions.
FLUX_INPUTS: list[tuple[str, object, str]] = [
    ("prompt", None, "what to draw: a string, or a list for a batch (CLIP's pooled embedding; T5 too unless prompt_2)"),
    ("prompt_2", None, "prompt for T5 (default: prompt)"),
    ("negative_prompt", None, "what to steer away from, with true CFG (prepare_true_cfg guider, true_cfg_scale > 1)"),
    ("negative_prompt_2", None, "negative prompt for T5 (default: negative_prompt)"),
    ("true_cfg_scale", 1.0, "true classifier-free guidance scale; > 1 with a negative prompt turns it on"),
    ("height", None, "image height in pixels, a multiple of 16 (default 1024)"),
    ("width", None, "image width in pixels, a multiple of 16 (default 1024)"),
    ("num_inference_steps", 28, "sampler steps over the full schedule (img2img runs the last `strength` of them)"),
    ("sigmas", None, "custom noise levels, one per step (instead of 1 .. 1/num_inference_steps)"),
    ("guidance_scale", None, "embedded (distilled) guidance for dev-style models (default 3.5; img2img 7.0)"),
    ("num_images_per_prompt", 1, "images made for each prompt"),
    ("generator", None, "torch.Generator (or one per image) that every random draw comes from"),
    ("latents", None, "starting latents to use instead of drawing them (packed (B, N, 4C) or (B, C, h, w))"),
    ("prompt_embeds", None, "precomputed T5 prompt embeddings, instead of prompt (with pooled_prompt_embeds)"),
    ("pooled_prompt_embeds", None, "precomputed CLIP pooled embeddings (with prompt_embeds)"),
    ("negative_prompt_embeds", None, "precomputed negative T5 embeddings, instead of negative_prompt"),
    ("negative_pooled_prompt_embeds", None, "precomputed negative CLIP pooled embeddings"),
    ("output_type", "pil", "pil, np, pt or latent (packed latents)"),
    ("max_sequence_length", MAX_SEQUENCE_LENGTH, "T5 tokens per prompt (at most 512)"),
    ("image", None, "input image (PIL / NumPy / torch): img2img, resized to height x width"),
    ("strength", None, "img2img: how much of the image to repaint, 0..1 (default 0.6)"),
]


def _branch(name: str, prepare: Block) -> Graph:
    """A workflow branch: ``prepare`` (unpacked starting latents) then 2x2 packing; every other
    input exposed under its own name."""
    g = Graph(name)
    g.add("prepare", prepare)
    g.add("pack", pack_latents)
    g.connect("prepare.latents", "pack.latents")
    for port in g.nodes["prepare"].inputs:
        g.expose_input(port, f"prepare.{port}")
    g.expose_output("latents", "pack.latents")
    return g.validate()


def latents_switch() -> Switch:
    """text2img / img2img: the only part of the graph that differs by workflow."""
    return Switch(
        {"img2img": _branch("img2img", prepare_image_latents), "text2img": _branch("text2img", prepare_latents)},
        when={"img2img": "image"}, default="text2img", name="prepare_latents",
        description="packed starting latents: from noise (text2img) or a noised image (img2img)",
    )


def build_flux_graph(workflow: str | None = None) -> Graph:
    """The Flux family graph, or with ``workflow`` ("text2img" / "img2img") that graph pruned to
    one workflow (named ``flux-<workflow>``)."""
    if workflow is not None and workflow not in WORKFLOWS:
        raise ValueError(f"unknown Flux workflow {workflow!r}; choose one of {', '.join(WORKFLOWS)}")
    g = Graph(FAMILY, "Flux.1 (dev or schnell): text2img and img2img, picked by the inputs given")
    for node, blk in (
        ("check_inputs", check_inputs_flux), ("encode_prompt", encode_prompt_flux),
        ("set_timesteps", set_timesteps_flux), ("latent_ids", prepare_latent_image_ids),
        ("preprocess_image", preprocess_image), ("encode_image", encode_image),
        ("prepare_latents", latents_switch()), ("denoise", flux_denoise_loop()),
        ("unpack", unpack_latents), ("decode", decode_latents), ("postprocess", postprocess_images),
    ):
        g.add(node, blk)
    for node in ("set_timesteps", "latent_ids", "preprocess_image", "prepare_latents", "unpack"):
        g.connect("check_inputs.height", f"{node}.height")
        g.connect("check_inputs.width", f"{node}.width")
    g.connect("check_inputs.strength", "set_timesteps.strength")
    g.connect("check_inputs.guidance_scale", "denoise.guidance_scale")
    g.connect("preprocess_image.init_image", "encode_image.init_image")
    g.connect("encode_image.image_moments", "prepare_latents.image_moments")
    for node in ("latent_ids", "prepare_latents"):
        g.connect("encode_prompt.prompt_embeds", f"{node}.prompt_embeds")
    for port in ("timesteps", "scheduler_state"):
        g.connect(f"set_timesteps.{port}", f"prepare_latents.{port}")
        g.connect(f"set_timesteps.{port}", f"denoise.{port}")
    for port in ("prompt_embeds", "pooled_prompt_embeds", "negative_prompt_embeds", "negative_pooled_prompt_embeds",
                 "text_ids"):
        g.connect(f"encode_prompt.{port}", f"denoise.{port}")
    g.connect("latent_ids.latent_image_ids", "denoise.latent_image_ids")
    g.connect("prepare_latents.latents", "denoise.latents")
    g.connect("denoise.latents", "unpack.latents")
    g.connect("unpack.latents", "decode.latents")
    g.connect("decode.images", "postprocess.images")

    fed = {target for _, target in g.edges}
    for name, default, description in FLUX_INPUTS:
        targets = [f"{node}.{name}" for node, blk in g.nodes.items() if name in blk.inputs and f"{node}.{name}" not in fed]
        g.expose_input(name, *targets, default=default, description=description)
    g.expose_output("images", "postprocess.images")
    g.expose_output("latents", "denoise.latents")
    g.validate()
    if workflow is None:
        return g
    selected = g.select(**{name: True for name in WORKFLOWS[workflow]})
    selected.name = f"{FAMILY}-{workflow}"
    return selected.validate()
