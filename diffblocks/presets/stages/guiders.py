"""Guidance as two swappable blocks around one denoiser call.

``prepare_guidance`` decides, per step, whether guidance is on (scale > 1 and the step inside the
``start``/``stop`` range) and, when it is, batches the unconditional and conditional inputs
(uncond first, like diffusers) so the denoiser runs **one** forward. A combine block then splits
the prediction and mixes it:

* ``apply_cfg``            classifier-free guidance, with ``guidance_rescale`` (arXiv 2305.08891 §3.4);
* ``apply_cfg_zero_star``  CFG-Zero* (arXiv 2503.18886): optimal uncond scale + zero-init steps;
* ``apply_apg``            adaptive projected guidance (arXiv 2410.02416), in x0 space by default;
* ``prepare_unguided``     replaces ``prepare_guidance``: always one conditional pass.

Every combine block has the same ports (``noise_pred``, ``guidance_active``, ``guidance_scale``,
``guidance_rescale``, ``latent_model_input``, ``t``), so swapping one is a single ``graph.replace``.
Per-run state (APG's momentum) lives in ``ctx.state``.
"""

from __future__ import annotations

from typing import Any

import torch

from ...blocks.context import RunContext
from ...blocks.function import block
from . import hints as _hints
from ...blocks.ports import Outputs
from ...blocks.types import Latents, NoisePred, PromptEmbeds, Timestep
from ...schedulers.prediction import Prediction, prediction_for

__all__ = [
    "rescale_noise_cfg", "cfg_zero_star_scale", "project_guidance", "guidance_in_range", "batch_for_guidance",
    "prepare_guidance", "prepare_unguided", "apply_cfg", "apply_cfg_zero_star", "apply_apg",
]


# ---- the math, as plain functions (unit-tested against diffusers' guiders) ------------------
def rescale_noise_cfg(noise_cfg: torch.Tensor, noise_pred_text: torch.Tensor, guidance_rescale: float) -> torch.Tensor:
    """Pull the guided prediction's per-sample std back towards the conditional one's (fixes
    over-exposure with zero-terminal-SNR schedules; Lin et al. 2023, §3.4)."""
    dims = list(range(1, noise_pred_text.ndim))
    rescaled = noise_cfg * (noise_pred_text.std(dim=dims, keepdim=True) / noise_cfg.std(dim=dims, keepdim=True))
    return guidance_rescale * rescaled + (1 - guidance_rescale) * noise_cfg


def cfg_zero_star_scale(cond: torch.Tensor, uncond: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """CFG-Zero*'s per-sample s* = <cond, uncond> / |uncond|^2 over flattened (B, N) tensors, (B, 1)."""
    c, u = cond.float(), uncond.float()
    return ((c * u).sum(dim=1, keepdim=True) / ((u * u).sum(dim=1, keepdim=True) + eps)).to(cond.dtype)


def project_guidance(
    cond: torch.Tensor, uncond: torch.Tensor, scale: float, eta: float, norm_threshold: float,
    running: torch.Tensor | None, momentum: float | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """APG (Sadat et al. 2024): the guidance update ``cond - uncond`` (momentum-averaged, norm-capped)
    split into parts parallel and orthogonal to ``cond``; the parallel part is damped by ``eta``.
    Returns the guided prediction and the new running average (for momentum)."""
    diff = cond - uncond
    dims = list(range(1, diff.ndim))
    if momentum is not None:
        diff = diff + (momentum * running if running is not None else 0)
        running = diff
    if norm_threshold > 0:
        diff = diff * torch.clamp(norm_threshold / diff.norm(p=2, dim=dims, keepdim=True), max=1.0)
    # Projection in float64: the parallel component is a small difference of large numbers.
    v0, v1 = diff.double(), torch.nn.functional.normalize(cond.double(), dim=dims)
    parallel = (v0 * v1).sum(dim=dims, keepdim=True) * v1
    update = (v0 - parallel).to(diff.dtype) + eta * parallel.to(diff.dtype)
    return uncond + scale * update, running


def guidance_in_range(ctx: RunContext, start: float, stop: float) -> bool:
    """Whether the current loop step is inside ``[start, stop)`` given as fractions of the loop."""
    if ctx.step is None or ctx.total is None:
        return True
    return int(start * ctx.total) <= ctx.step < int(stop * ctx.total)


# ---- prepare: one batched pass, or one conditional pass --------------------------------------
def batch_for_guidance(ctx: RunContext, key: str, uncond: torch.Tensor | None, cond: torch.Tensor | None) -> torch.Tensor | None:
    """``cat([uncond, cond])`` (zeros for a missing ``uncond``), made once per run and cached in
    ``ctx.state[key]``: the embeddings are the same objects every step."""
    if cond is None:
        return None
    hit = ctx.state.get(key)
    if hit is not None and hit[0] is cond and hit[1] is uncond:
        return hit[2]
    joined = torch.cat([uncond if uncond is not None else torch.zeros_like(cond), cond])
    ctx.state[key] = (cond, uncond, joined)
    return joined


PREPARED = Outputs(sample=Latents, encoder_hidden_states=PromptEmbeds, guidance_active=bool)


@block("prepare_guidance", version=2, config=["start", "stop"], outputs=PREPARED)
def prepare_guidance(
    latent_model_input: Latents,
    prompt_embeds: PromptEmbeds,
    negative_prompt_embeds: PromptEmbeds | None,
    ctx: RunContext,
    guidance_scale: float = 7.5,
    start: float = 0.0,
    stop: float = 1.0,
) -> dict:
    """Batch [uncond, cond] inputs for one denoiser call when guidance is on at this step.

    A family whose denoiser takes more conditioning (SDXL's pooled embeddings and time ids)
    batches it in its own block from ``guidance_active`` (see ``batch_for_guidance``).

    Args:
        start: first step with guidance, as a fraction of the loop.
        stop: guidance ends before this fraction of the loop.
    """
    active = guidance_scale > 1.0 and guidance_in_range(ctx, start, stop)
    if not active:
        return {"sample": latent_model_input, "encoder_hidden_states": prompt_embeds, "guidance_active": False}
    if negative_prompt_embeds is None:
        raise ValueError("prepare_guidance: guidance_scale > 1 needs negative_prompt_embeds")
    return {
        "sample": torch.cat([latent_model_input] * 2),
        "encoder_hidden_states": batch_for_guidance(ctx, "embeds", negative_prompt_embeds, prompt_embeds),
        "guidance_active": True,
    }


@block("prepare_unguided", version=2, outputs=PREPARED)
def prepare_unguided(
    latent_model_input: Latents,
    prompt_embeds: PromptEmbeds,
    negative_prompt_embeds: PromptEmbeds | None = None,
    guidance_scale: float = 1.0,
) -> dict:
    """No guidance: one conditional denoiser pass per step (negative inputs are ignored)."""
    return {"sample": latent_model_input, "encoder_hidden_states": prompt_embeds, "guidance_active": False}


# ---- combine ---------------------------------------------------------------------------------
@block("apply_cfg", version=1)
def apply_cfg(
    noise_pred: NoisePred,
    guidance_active: bool = False,
    guidance_scale: float = 7.5,
    guidance_rescale: float = 0.0,
    latent_model_input: Latents | None = None,
    t: Timestep | None = None,
) -> NoisePred:
    """Classifier-free guidance: uncond + scale * (cond - uncond), optionally rescaled.

    ``latent_model_input`` and ``t`` belong to the common guider interface; CFG does not use them.
    """
    if not guidance_active:
        return noise_pred
    uncond, cond = noise_pred.chunk(2)
    guided = uncond + guidance_scale * (cond - uncond)
    return rescale_noise_cfg(guided, cond, guidance_rescale) if guidance_rescale > 0 else guided


@block("apply_cfg_zero_star", version=1, config=["zero_init_steps"])
def apply_cfg_zero_star(
    noise_pred: NoisePred,
    ctx: RunContext,
    guidance_active: bool = False,
    guidance_scale: float = 7.5,
    guidance_rescale: float = 0.0,
    latent_model_input: Latents | None = None,
    t: Timestep | None = None,
    zero_init_steps: int = 1,
) -> NoisePred:
    """CFG-Zero*: scale the unconditional prediction by s* before CFG; zero prediction for the
    first ``zero_init_steps`` steps. Works on the raw predictions (as the paper, written for flow
    matching, and diffusers do), so it needs no prediction-type conversion.

    Args:
        zero_init_steps: steps at the start whose prediction is zeroed.
    """
    cond = noise_pred.chunk(2)[1] if guidance_active else noise_pred
    if ctx.step is not None and ctx.step < zero_init_steps:
        guided = torch.zeros_like(cond)
    elif not guidance_active:
        guided = cond
    else:
        uncond = noise_pred.chunk(2)[0]
        alpha = cfg_zero_star_scale(cond.flatten(1), uncond.flatten(1)).view(-1, *(1,) * (cond.ndim - 1))
        uncond = uncond * alpha
        guided = uncond + guidance_scale * (cond - uncond)
    return rescale_noise_cfg(guided, cond, guidance_rescale) if guidance_rescale > 0 else guided


@block(
    "apply_apg", version=1,
    components={"scheduler": _hints.SCHEDULER},
    config=["eta", "momentum", "norm_threshold", "space"],
)
def apply_apg(
    scheduler: Any,
    noise_pred: NoisePred,
    ctx: RunContext,
    guidance_active: bool = False,
    guidance_scale: float = 7.5,
    guidance_rescale: float = 0.0,
    latent_model_input: Latents | None = None,
    t: Timestep | None = None,
    eta: float = 1.0,
    momentum: float | None = None,
    norm_threshold: float = 15.0,
    space: str = "x0",
) -> NoisePred:
    """Adaptive projected guidance (APG).

    With ``space="x0"`` (the paper's choice) the predictions are mapped to the denoised estimate
    x0 through the scheduler's prediction type and ``latent_model_input`` (the input the denoiser
    saw), guided there, and mapped back (epsilon, v, sample and flow predictions); ``space="noise_pred"`` guides the raw
    predictions (what diffusers' APG guider does).

    Args:
        eta: weight of the update's component parallel to the conditional prediction.
        momentum: running-average factor of the update (None: no momentum).
        norm_threshold: cap on the update's norm per sample (0: no cap).
        space: "x0" or "noise_pred".
    """
    if not guidance_active:
        return noise_pred
    uncond, cond = noise_pred.chunk(2)
    to_x0 = from_x0 = None
    if space == "x0":
        to_x0, from_x0 = _x0_maps(scheduler, latent_model_input, t, cond)
        uncond, cond = to_x0(uncond), to_x0(cond)
    elif space != "noise_pred":
        raise ValueError(f"apply_apg: space must be 'x0' or 'noise_pred', got {space!r}")
    guided, ctx.state["running"] = project_guidance(
        cond, uncond, guidance_scale, eta, norm_threshold, ctx.state.get("running"), momentum
    )
    if from_x0 is not None:
        guided, cond = from_x0(guided), from_x0(cond)
    return rescale_noise_cfg(guided, cond, guidance_rescale) if guidance_rescale > 0 else guided


def _x0_maps(scheduler: Any, sample: torch.Tensor | None, t: torch.Tensor | None, like: torch.Tensor):
    """Maps prediction <-> x0 at timestep ``t``, through the scheduler's own prediction type
    (``prediction_for(...).to_denoised``), given the sample the denoiser saw: the variance-
    preserving x_t = alpha x0 + sigma eps (k-diffusion samplers scale their input to it), or the
    flow-matching x_t = (1 - sigma) x0 + sigma noise."""
    if sample is None or t is None:
        raise ValueError("apply_apg(space='x0') needs latent_model_input and t; connect them or use space='noise_pred'")
    x = sample[:, : like.shape[1]]  # inpainting UNets see extra mask channels; x_t is the first ones
    prediction = scheduler_prediction(scheduler)
    alpha, sigma = _signal_and_noise(scheduler, prediction, float(t))
    # to_denoised is affine in the model output, m -> offset + slope * m: invert it the same way.
    offset = prediction.to_denoised(torch.zeros_like(x), x, alpha, sigma)
    slope = float(prediction.to_denoised(torch.ones(()), torch.zeros(()), alpha, sigma))
    return (lambda m: prediction.to_denoised(m, x, alpha, sigma)), (lambda x0: (x0 - offset) / slope)


def scheduler_prediction(scheduler: Any) -> Prediction:
    """What ``scheduler``'s model predicts: its ``prediction_type``; flow-matching schedulers
    (which have no such setting) predict the flow."""
    default = "flow_prediction" if not hasattr(scheduler, "alphas_cumprod") else "epsilon"
    return prediction_for(scheduler.config.get("prediction_type") or default, type(scheduler).__name__)


def _signal_and_noise(scheduler: Any, prediction: Prediction, t: float) -> tuple[float, float]:
    """(alpha_t, sigma_t) of x_t = alpha_t x0 + sigma_t noise at training timestep ``t``."""
    if prediction.name == "flow_prediction":
        sigma = t / scheduler.config["num_train_timesteps"]  # flow timesteps are sigma * num_train_timesteps
        return 1.0 - sigma, sigma
    table = scheduler.alphas_cumprod
    lo = min(int(t), len(table) - 1)
    hi = min(lo + 1, len(table) - 1)
    alpha_bar = float(table[lo] + (t - lo) * (table[hi] - table[lo]))  # fractional timesteps interpolate
    return alpha_bar**0.5, (1 - alpha_bar) ** 0.5
