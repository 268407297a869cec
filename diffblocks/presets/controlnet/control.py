"""The ControlNet call inside the denoise step: residuals for the UNet, per step.

Semantics follow diffusers' ControlNet pipelines:

* ``controlnet_conditioning_scale`` scales each net's residuals; a net whose step lies outside its
  ``[control_guidance_start, control_guidance_end]`` window (diffusers' ``controlnet_keep``:
  step i is kept unless i / n < start or (i + 1) / n > end) contributes nothing that step (it is
  skipped: adding its zero residuals would change nothing);
* with guidance, the ControlNet sees the same [uncond, cond] batch as the UNet, and its control
  image is doubled; in ``guess_mode`` (or for a net with ``global_pool_conditions``) it sees only
  the conditional half and the unconditional rows get zero residuals;
* several nets (a ``MultiControlNetModel`` or a list) sum their residuals; the scale, start and end
  are then one value for all or a list with one per net.
"""

from __future__ import annotations

from typing import Any

import torch

from ...blocks.context import RunContext
from ...blocks.function import block
from ...blocks.ports import Outputs
from ...blocks.types import ControlImage, ControlResiduals, Latents, MidResidual, PooledEmbeds, PromptEmbeds, TimeIds, Timestep
from ...models.multi_controlnet import controlnets_of
from ..stages.guiders import batch_for_guidance
from . import hints as _hints

__all__ = ["apply_controlnet", "per_net", "controlnet_keep"]

Scale = float | list[float]


def per_net(value: float | list[float] | tuple[float, ...], n: int, name: str) -> list[float]:
    """One value per net: a number for all of them, or a list of ``n``."""
    if isinstance(value, (list, tuple)):
        if len(value) != n and n > 1:
            raise ValueError(f"apply_controlnet.{name}: {len(value)} values for {n} ControlNets")
        return [float(v) for v in value[:n]]
    return [float(value)] * n


def controlnet_keep(step: int, total: int, start: float, end: float) -> float:
    """1.0 when ``step`` of ``total`` lies inside the [start, end] window (diffusers' rule), else 0.0."""
    return 1.0 - float(step / total < start or (step + 1) / total > end)


@block(
    "apply_controlnet", version=1, components={"controlnet": _hints.CONTROLNET},
    outputs=Outputs(down_block_additional_residuals=ControlResiduals | None, mid_block_additional_residual=MidResidual | None),
)
def apply_controlnet(
    controlnet: Any,
    latent_model_input: Latents,
    t: Timestep,
    encoder_hidden_states: PromptEmbeds,
    control_image: ControlImage,
    ctx: RunContext,
    guidance_active: bool = False,
    text_embeds: PooledEmbeds | None = None,
    time_ids: TimeIds | None = None,
    controlnet_conditioning_scale: Scale = 1.0,
    control_guidance_start: Scale = 0.0,
    control_guidance_end: Scale = 1.0,
    guess_mode: bool = False,
) -> dict:
    """Run the ControlNet(s) on this step's input and sum their residuals (see the module docstring).

    ``latent_model_input`` is the scaled latents before guidance batching (without inpainting
    channels); ``encoder_hidden_states``, ``text_embeds`` and ``time_ids`` are what the UNet gets.
    """
    nets = controlnets_of(controlnet)
    images = control_image if isinstance(control_image, (list, tuple)) else [control_image]
    if len(images) != len(nets):
        raise ValueError(f"apply_controlnet.control_image: {len(nets)} ControlNets need {len(nets)} control images, got {len(images)}")
    scales = per_net(controlnet_conditioning_scale, len(nets), "controlnet_conditioning_scale")
    starts = per_net(control_guidance_start, len(nets), "control_guidance_start")
    ends = per_net(control_guidance_end, len(nets), "control_guidance_end")
    step, total = (ctx.step or 0), (ctx.total or 1)
    guess = guess_mode or bool(getattr(nets[0].config, "global_pool_conditions", False))
    added = {"text_embeds": text_embeds, "time_ids": time_ids} if text_embeds is not None else None
    x, states = latent_model_input, encoder_hidden_states
    doubled = guidance_active and not guess
    if guidance_active and guess:  # the conditional half only
        states = states.chunk(2)[1]
        added = {k: v.chunk(2)[1] for k, v in added.items()} if added else None
    elif guidance_active:
        x = torch.cat([x] * 2)

    down: list[torch.Tensor] | None = None
    mid: torch.Tensor | None = None
    for i, (net, image) in enumerate(zip(nets, images)):
        scale = scales[i] * controlnet_keep(step, total, starts[i], ends[i])
        if scale == 0.0:
            continue
        image = batch_for_guidance(ctx, f"image{i}", image, image) if doubled else image
        dtype = image.dtype  # the net's (prepare_control_image): text encoders may run in another
        cond = {k: v.to(dtype) for k, v in added.items()} if added else None
        d, m = net(x.to(dtype), t, encoder_hidden_states=states.to(dtype), controlnet_cond=image, conditioning_scale=scale,
                   added_cond_kwargs=cond, guess_mode=guess, return_dict=False)
        down = list(d) if down is None else [a + b for a, b in zip(down, d)]
        mid = m if mid is None else mid + m
    if down is not None and guidance_active and guess:  # zero residuals for the unconditional rows
        down = [torch.cat([torch.zeros_like(d), d]) for d in down]
        mid = torch.cat([torch.zeros_like(mid), mid])
    return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
