"""The denoise loop: its body blocks and the ``denoise_loop`` builder.

One step of the body, each a separate swappable node::

    scale_input -> inpaint_channels -> prepare_guidance -> predict_noise -> guidance -> step -> blend_inpaint

``inpaint_channels`` and ``blend_inpaint`` pass latents through unless the inpainting inputs are
given (9-channel UNets take the mask and masked-image latents as input channels; 4-channel UNets
get the known region blended back after each step). The sampler's per-run state is the run's
copy of ``set_timesteps``' template (``run_state``).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch

from ..schedulers.base import SchedulerState
from . import _hints
from .context import RunContext
from .function import block
from .timesteps import run_state
from .types import ImageLatents, Latents, Mask, Noise, NoisePred, PooledEmbeds, PromptEmbeds, TimeIds, Timestep

__all__ = [
    "scale_model_input", "concat_inpaint_channels", "predict_noise", "step_scheduler",
    "blend_inpaint_latents", "denoise_body", "denoise_loop",
]


@block("scale_model_input", version=1, components={"scheduler": _hints.SCHEDULER}, output_name="latent_model_input")
def scale_model_input(scheduler: Any, latents: Latents, t: Timestep, scheduler_state: SchedulerState, ctx: RunContext) -> Latents:
    """The denoiser's input at timestep ``t`` (k-diffusion samplers divide by sqrt(sigma^2 + 1))."""
    return scheduler.scale_model_input(latents, t, state=run_state(ctx, scheduler_state))


@block("concat_inpaint_channels", version=1)
def concat_inpaint_channels(
    latent_model_input: Latents, mask: Mask | None = None, masked_image_latents: ImageLatents | None = None
) -> Latents:
    """Inpainting UNets (9 channels): append the mask and the masked image's latents as channels."""
    if masked_image_latents is None:
        return latent_model_input
    return torch.cat([latent_model_input, mask, masked_image_latents], dim=1)


@block("predict_noise", version=1, components={"unet": _hints.UNET}, output_name="noise_pred")
def predict_noise(
    unet: Any,
    sample: Latents,
    t: Timestep,
    encoder_hidden_states: PromptEmbeds,
    text_embeds: PooledEmbeds | None = None,
    time_ids: TimeIds | None = None,
) -> NoisePred:
    """One UNet forward (batched when a guider prepared [uncond, cond] inputs).

    Args:
        text_embeds: SDXL pooled text embeddings (with ``time_ids``, the added conditioning).
    """
    added = {"text_embeds": text_embeds, "time_ids": time_ids} if text_embeds is not None else None
    return unet(sample, t, encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added, return_dict=False)[0]


@functools.lru_cache(maxsize=64)
def _takes_eta(step_fn: Any) -> bool:
    return "eta" in inspect.signature(step_fn).parameters


@block("step_scheduler", version=1, memoise=False, components={"scheduler": _hints.SCHEDULER})
def step_scheduler(
    scheduler: Any,
    noise_pred: NoisePred,
    t: Timestep,
    latents: Latents,
    scheduler_state: SchedulerState,
    ctx: RunContext,
    generator: Any = None,
    eta: float = 0.0,
) -> Latents:
    """Advance the latents one sampler step (ancestral/SDE samplers draw from ``generator``).

    Args:
        eta: DDIM's noise weight (ignored by samplers without it).
    """
    options = {"eta": eta} if _takes_eta(type(scheduler)._step) else {}
    state = run_state(ctx, scheduler_state)
    return scheduler.step(noise_pred, t, latents, generator=generator, return_dict=False, state=state, **options)[0]


@block("blend_inpaint_latents", version=1, components={"scheduler": _hints.SCHEDULER})
def blend_inpaint_latents(
    scheduler: Any,
    latents: Latents,
    scheduler_state: SchedulerState,
    ctx: RunContext,
    mask: Mask | None = None,
    image_latents: ImageLatents | None = None,
    noise: Noise | None = None,
) -> Latents:
    """4-channel inpainting: keep the known region from the image, noised to the next timestep."""
    if image_latents is None:
        return latents
    state = run_state(ctx, scheduler_state)
    known = image_latents
    if ctx.step is not None and ctx.step < ctx.total - 1:
        next_t = state.timesteps[(state.begin_index or 0) + ctx.step + 1]
        known = scheduler.add_noise(image_latents, noise, next_t.reshape(1), state=state)
    return (1 - mask) * known + mask * latents


def denoise_body(sdxl: bool = False, guider: str = "apply_cfg") -> Any:
    """One denoise step as a graph (see the module docstring); ``sdxl`` adds the pooled embeddings
    and time ids; ``guider`` names the combine block."""
    from ..graph import Graph

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
    if sdxl:
        g.connect("prepare_guidance.text_embeds", "predict_noise.text_embeds")
        g.connect("prepare_guidance.time_ids", "predict_noise.time_ids")
        for name in ("pooled_prompt_embeds", "negative_pooled_prompt_embeds", "add_time_ids", "negative_add_time_ids"):
            g.expose_input(name, f"prepare_guidance.{name}")
    g.expose_output("latents", "blend_inpaint.latents")
    return g.validate()


def denoise_loop(sdxl: bool = False, guider: str = "apply_cfg") -> Any:
    """The denoise ``Loop``: ``denoise_body`` once per timestep, carrying ``latents``."""
    from ..graph import Loop

    return Loop(denoise_body(sdxl, guider), over="timesteps", item="t", carry={"latents": "latents"}, name="denoise",
                description="the sampler loop: one denoise step per timestep")
