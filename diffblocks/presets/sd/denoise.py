"""The SD / SDXL denoise loop: the UNet call and the loop body built from the shared stage blocks.

One step of the body, each a separate swappable node::

    scale_input -> inpaint_channels -> prepare_guidance -> [added_cond (SDXL)] -> predict_noise
        -> guidance -> step -> blend_inpaint

SDXL's UNet also takes pooled text embeddings and time ids ("added conditioning");
``added_cond`` batches them like ``prepare_guidance`` batched the prompt embeddings, following
its ``guidance_active`` output, so the shared guider blocks know nothing of SDXL.
"""

from __future__ import annotations

from typing import Any

from ...blocks.function import block
from ...blocks.types import (
    AdapterResiduals, ControlResiduals, Latents, MidResidual, NoisePred, PooledEmbeds, PromptEmbeds, TimeIds, Timestep,
)
from ...graph import Graph, Loop
from . import hints as _hints

__all__ = ["predict_noise", "denoise_body", "denoise_body_sdxl", "denoise_loop"]


@block("predict_noise", version=1, components={"unet": _hints.UNET}, output_name="noise_pred")
def predict_noise(
    unet: Any,
    sample: Latents,
    t: Timestep,
    encoder_hidden_states: PromptEmbeds,
    text_embeds: PooledEmbeds | None = None,
    time_ids: TimeIds | None = None,
    down_block_additional_residuals: ControlResiduals | None = None,
    mid_block_additional_residual: MidResidual | None = None,
    down_intrablock_additional_residuals: AdapterResiduals | None = None,
) -> NoisePred:
    """One UNet forward (batched when a guider prepared [uncond, cond] inputs).

    Args:
        text_embeds: SDXL pooled text embeddings (with ``time_ids``, the added conditioning).
        down_block_additional_residuals: ControlNet residuals (``presets/controlnet``), with the mid one.
        down_intrablock_additional_residuals: T2I-Adapter features, added inside the down blocks.
    """
    added = {"text_embeds": text_embeds, "time_ids": time_ids} if text_embeds is not None else None
    return unet(
        sample, t, encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added,
        down_block_additional_residuals=down_block_additional_residuals,
        mid_block_additional_residual=mid_block_additional_residual,
        down_intrablock_additional_residuals=down_intrablock_additional_residuals, return_dict=False,
    )[0]


def denoise_body(guider: str = "apply_cfg") -> Graph:
    """One SD 1.x denoise step as a graph (see the module docstring); ``guider`` names the combine block."""
    g = Graph("denoise_step", "one sampler step: scale, guide, predict, combine, step")
    for node, blk in (
        ("scale_input", "scale_model_input"), ("inpaint_channels", "concat_inpaint_channels"),
        ("prepare_guidance", "prepare_guidance"), ("predict_noise", "predict_noise"),
        ("guidance", guider), ("step", "step_scheduler"), ("blend_inpaint", "blend_inpaint_latents"),
    ):
        g.add(node, blk)
    g.connect("scale_input.latent_model_input", "inpaint_channels.latent_model_input")
    g.connect("scale_input.latent_model_input", "guidance.latent_model_input")
    g.connect("inpaint_channels.latent_model_input", "prepare_guidance.latent_model_input")
    g.connect("prepare_guidance.sample", "predict_noise.sample")
    g.connect("prepare_guidance.encoder_hidden_states", "predict_noise.encoder_hidden_states")
    g.connect("prepare_guidance.guidance_active", "guidance.guidance_active")
    g.connect("predict_noise.noise_pred", "guidance.noise_pred")
    g.connect("guidance.noise_pred", "step.noise_pred")
    g.connect("step.latents", "blend_inpaint.latents")
    g.expose_input("latents", "scale_input.latents", "step.latents")
    g.expose_input("t", "scale_input.t", "predict_noise.t", "guidance.t", "step.t")
    g.expose_input("scheduler_state", "scale_input.scheduler_state", "step.scheduler_state", "blend_inpaint.scheduler_state")
    g.expose_input("prompt_embeds", "prepare_guidance.prompt_embeds")
    g.expose_input("negative_prompt_embeds", "prepare_guidance.negative_prompt_embeds")
    g.expose_input("guidance_scale", "prepare_guidance.guidance_scale", "guidance.guidance_scale")
    g.expose_input("guidance_rescale", "guidance.guidance_rescale")
    g.expose_input("generator", "step.generator")
    g.expose_input("eta", "step.eta")
    g.expose_input("mask", "inpaint_channels.mask", "blend_inpaint.mask")
    g.expose_input("masked_image_latents", "inpaint_channels.masked_image_latents")
    g.expose_input("image_latents", "blend_inpaint.image_latents")
    g.expose_input("noise", "blend_inpaint.noise")
    g.expose_output("latents", "blend_inpaint.latents")
    return g.validate()


def denoise_body_sdxl(guider: str = "apply_cfg") -> Graph:
    """The SD body plus ``added_cond``: pooled embeddings and time ids for SDXL's UNet."""
    g = denoise_body(guider)
    g.add("added_cond", "prepare_added_conditioning")
    g.connect("prepare_guidance.guidance_active", "added_cond.guidance_active")
    g.connect("added_cond.text_embeds", "predict_noise.text_embeds")
    g.connect("added_cond.time_ids", "predict_noise.time_ids")
    for name in ("pooled_prompt_embeds", "negative_pooled_prompt_embeds", "add_time_ids", "negative_add_time_ids"):
        g.expose_input(name, f"added_cond.{name}")
    return g.validate()


def denoise_loop(body: Graph) -> Loop:
    """The denoise ``Loop``: ``body`` once per timestep, carrying ``latents``."""
    return Loop(body, over="timesteps", item="t", carry={"latents": "latents"}, name="denoise",
                description="the sampler loop: one denoise step per timestep")
