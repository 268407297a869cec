"""APG and CFG-Zero* on a flow-matching sampler: APG reaches x0 through the scheduler's own
prediction type (flow: x0 = x_t - sigma v), CFG-Zero* works on the raw predictions. Checked
step by step against the formulas written out here (fp32, <= 1e-5)."""

from __future__ import annotations

import pytest
import torch

from diffblocks.blocks import Latents, NoisePred, Timestep, block
from diffblocks.graph import Graph, Loop
from diffblocks.presets.stages.guiders import _x0_maps, apply_apg, apply_cfg_zero_star, project_guidance
from diffblocks.schedulers import DDIMScheduler, FlowMatchEulerDiscreteScheduler

ATOL = 1e-5


@block("t_flow_two_predictions", register=False, output_name="noise_pred")
def two_predictions(latent_model_input: Latents, t: Timestep) -> NoisePred:
    """A toy denoiser returning [uncond, cond] flow predictions that depend on x and t."""
    s = t / 1000
    return torch.cat([0.8 * latent_model_input - s, 1.1 * latent_model_input + 0.3 * s])


def _sampler_graph(guider) -> Graph:
    """set_timesteps -> Loop(scale_model_input -> toy denoiser -> guider -> step_scheduler)."""
    body = Graph("step")
    body.add("scale", "scale_model_input").add("predict", two_predictions).add("guide", guider).add("step", "step_scheduler")
    body.connect("scale.latent_model_input", "predict.latent_model_input")
    body.connect("scale.latent_model_input", "guide.latent_model_input")
    body.connect("predict.noise_pred", "guide.noise_pred")
    body.connect("guide.noise_pred", "step.noise_pred")
    body.expose_input("latents", "scale.latents", "step.latents")
    body.expose_input("t", "scale.t", "predict.t", "guide.t", "step.t")
    body.expose_input("scheduler_state", "scale.scheduler_state", "step.scheduler_state")
    body.expose_input("guidance_active", "guide.guidance_active")
    body.expose_input("guidance_scale", "guide.guidance_scale")
    body.expose_output("latents", "step.latents")
    g = Graph("flow_sampler").add("timesteps", "set_timesteps")
    g.add("denoise", Loop(body, over="timesteps", item="t", carry={"latents": "latents"}, progress=False))
    g.connect("timesteps.timesteps", "denoise.timesteps")
    g.connect("timesteps.scheduler_state", "denoise.scheduler_state")
    for name in ("latents", "guidance_active", "guidance_scale"):
        g.expose_input(name, f"denoise.{name}")
    g.expose_input("num_inference_steps", "timesteps.num_inference_steps")
    g.expose_output("latents", "denoise.latents")
    return g


def _reference(x: torch.Tensor, scheduler, steps: int, guide) -> torch.Tensor:
    """Euler on the flow ODE, x <- x + (sigma_next - sigma) v, with v = guide(step, x, sigma, uncond, cond)."""
    sigmas = scheduler.new_state(steps).sigmas.tolist()
    for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        t = torch.tensor(sigma * 1000)
        uncond, cond = two_predictions.fn(x, t).chunk(2)
        x = x + (sigma_next - sigma) * guide(i, x, sigma, uncond, cond)
    return x


@pytest.fixture()
def start() -> torch.Tensor:
    return torch.randn((2, 4, 6, 6), generator=torch.Generator().manual_seed(0))


def test_flow_x0_maps_are_the_flow_formula_and_invert():
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    x, v = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6)
    to_x0, from_x0 = _x0_maps(scheduler, x, torch.tensor(700.0), v)
    torch.testing.assert_close(to_x0(v), x - 0.7 * v, atol=ATOL, rtol=0)
    torch.testing.assert_close(from_x0(to_x0(v)), v, atol=ATOL, rtol=0)


def test_vp_x0_maps_are_unchanged_by_the_generic_inverse():
    """Epsilon prediction: x0 = (x - sqrt(1 - a) eps) / sqrt(a), and back."""
    scheduler = DDIMScheduler(beta_schedule="scaled_linear")
    x, eps = torch.randn(1, 4, 6, 6), torch.randn(1, 4, 6, 6)
    to_x0, from_x0 = _x0_maps(scheduler, x, torch.tensor(601), eps)
    a = float(scheduler.alphas_cumprod[601])
    torch.testing.assert_close(to_x0(eps), (x - (1 - a) ** 0.5 * eps) / a**0.5, atol=ATOL, rtol=0)
    torch.testing.assert_close(from_x0(to_x0(eps)), eps, atol=ATOL, rtol=0)


def test_apg_in_x0_space_on_a_flow_sampler(start):
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    guider = apply_apg.with_config(eta=0.5, norm_threshold=2.0, momentum=-0.5)
    out = _sampler_graph(guider)(components={"scheduler": scheduler}, latents=start, guidance_active=True,
                                 guidance_scale=4.0, num_inference_steps=4)
    running = {"value": None}

    def apg(i, x, sigma, uncond, cond):
        x0_u, x0_c = x - sigma * uncond, x - sigma * cond
        guided, running["value"] = project_guidance(x0_c, x0_u, 4.0, 0.5, 2.0, running["value"], -0.5)
        return (x - guided) / sigma

    expected = _reference(start, scheduler, 4, apg)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)
    # and APG really differs from plain CFG here (the projection and momentum act)
    cfg = _reference(start, scheduler, 4, lambda i, x, s, u, c: u + 4.0 * (c - u))
    assert (out - cfg).abs().max() > 1e-2


def test_cfg_zero_star_on_a_flow_sampler(start):
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    out = _sampler_graph(apply_cfg_zero_star)(components={"scheduler": scheduler}, latents=start,
                                              guidance_active=True, guidance_scale=4.0, num_inference_steps=4)

    def zero_star(i, x, sigma, uncond, cond):
        if i == 0:  # zero_init_steps=1: the first step predicts zero flow, x stays put
            return torch.zeros_like(cond)
        c, u = cond.flatten(1), uncond.flatten(1)
        alpha = ((c * u).sum(1) / (u * u).sum(1)).view(-1, 1, 1, 1)
        return alpha * uncond + 4.0 * (cond - alpha * uncond)

    torch.testing.assert_close(out, _reference(start, scheduler, 4, zero_star), atol=ATOL, rtol=0)
