"""The Flux denoise loop: its transformer-call block and the ``flux_denoise_loop`` builder.

One step of the body, each a separate swappable node::

    guider -> predict -> guidance -> step

``guider`` is ``prepare_distilled_guidance`` or ``prepare_true_cfg`` (see
:mod:`.guiders`), ``predict`` calls the transformer once, ``guidance`` is the shared
``apply_cfg`` (it mixes the halves with ``true_cfg_scale`` when the guider batched them, else
passes through) and ``step`` the shared ``step_scheduler``.
"""

from __future__ import annotations

from typing import Any

import torch

from ..stages.denoise import step_scheduler
from ...blocks.function import block
from ..stages.guiders import apply_cfg
from ...blocks.types import LatentIds, Latents, NoisePred, PooledEmbeds, PromptEmbeds, TextIds, Timestep
from ...graph import Graph, Loop
from . import guiders, hints

__all__ = ["predict_flow", "flux_denoise_body", "flux_denoise_loop"]


@block("predict_flow", version=1, components={"transformer": hints.TRANSFORMER}, output_name="noise_pred")
def predict_flow(
    transformer: Any,
    hidden_states: Latents,
    t: Timestep,
    encoder_hidden_states: PromptEmbeds,
    pooled_projections: PooledEmbeds,
    txt_ids: TextIds,
    img_ids: LatentIds,
    guidance: torch.Tensor | None = None,
) -> NoisePred:
    """One transformer forward on packed latents: the flow velocity at timestep ``t``.

    Args:
        guidance: the embedded guidance per sample (dev-style models), None for schnell-style ones.
    """
    # Flux models take the timestep as a sigma in [0, 1]; the schedule counts in 1000ths.
    timestep = t.expand(hidden_states.shape[0]).to(hidden_states.dtype) / 1000
    return transformer(
        hidden_states=hidden_states, timestep=timestep, guidance=guidance, pooled_projections=pooled_projections,
        encoder_hidden_states=encoder_hidden_states, txt_ids=txt_ids, img_ids=img_ids, return_dict=False,
    )[0]


def flux_denoise_body(guider: str = guiders.prepare_distilled_guidance.name) -> Graph:
    """One Flux denoise step as a graph (see the module docstring); ``guider`` names the prepare block."""
    g = Graph("flux_denoise_step", "one sampler step: guide, predict the flow, combine, step")
    for node, blk in (("guider", guider), ("predict", "predict_flow"), ("guidance", apply_cfg), ("step", step_scheduler)):
        g.add(node, blk)
    for port in ("hidden_states", "encoder_hidden_states", "pooled_projections", "guidance"):
        g.connect(f"guider.{port}", f"predict.{port}")
    g.connect("guider.guidance_active", "guidance.guidance_active")
    g.connect("predict.noise_pred", "guidance.noise_pred")
    g.connect("guidance.noise_pred", "step.noise_pred")
    g.expose_input("latents", "guider.latents", "guidance.latent_model_input", "step.latents")
    g.expose_input("t", "predict.t", "guidance.t", "step.t")
    g.expose_input("scheduler_state", "step.scheduler_state")
    for name in ("prompt_embeds", "pooled_prompt_embeds", "negative_prompt_embeds", "negative_pooled_prompt_embeds",
                 "guidance_scale"):
        g.expose_input(name, f"guider.{name}")
    g.expose_input("true_cfg_scale", "guider.true_cfg_scale", "guidance.guidance_scale")
    g.expose_input("text_ids", "predict.txt_ids")
    g.expose_input("latent_image_ids", "predict.img_ids")
    g.expose_input("generator", "step.generator")
    g.expose_output("latents", "step.latents")
    return g.validate()


def flux_denoise_loop(guider: str = guiders.prepare_distilled_guidance.name) -> Loop:
    """The Flux denoise ``Loop``: ``flux_denoise_body`` once per timestep, carrying ``latents``."""
    return Loop(flux_denoise_body(guider), over="timesteps", item="t", carry={"latents": "latents"}, name="denoise",
                description="the sampler loop: one flow-matching step per timestep")
