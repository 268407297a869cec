"""Guider math against diffusers' guiders on the same tensors (<= 1e-6), and guider behaviour
(batched passes, step range, "no guidance") on toy inputs."""

from __future__ import annotations

import torch

from diffblocks.presets.stages.guiders import (
    apply_apg, apply_cfg, apply_cfg_zero_star, prepare_guidance, prepare_unguided, project_guidance, rescale_noise_cfg,
)
from diffblocks.graph import Graph, Loop

ATOL = 1e-6


def _preds(seed: int = 0, shape=(2, 4, 8, 8)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


def test_rescale_matches_diffusers():
    from diffusers.guiders.guider_utils import rescale_noise_cfg as theirs

    cfg, text = _preds(1)
    torch.testing.assert_close(rescale_noise_cfg(cfg, text, 0.7), theirs(cfg, text, 0.7), atol=ATOL, rtol=0)


def test_cfg_block_matches_diffusers_guider():
    from diffusers.guiders import ClassifierFreeGuidance

    cond, uncond = _preds(2)
    guider = ClassifierFreeGuidance(guidance_scale=6.0, guidance_rescale=0.3)
    guider.set_state(step=1, num_inference_steps=4, timestep=torch.tensor(500))
    theirs = guider.forward(cond, uncond).pred
    ours = apply_cfg(noise_pred=torch.cat([uncond, cond]), guidance_active=True, guidance_scale=6.0, guidance_rescale=0.3)
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)


def test_cfg_zero_star_matches_diffusers_guider():
    from diffusers.guiders import ClassifierFreeZeroStarGuidance

    cond, uncond = _preds(3)
    guider = ClassifierFreeZeroStarGuidance(guidance_scale=5.0, zero_init_steps=1, guidance_rescale=0.2)
    guider.set_state(step=2, num_inference_steps=4, timestep=torch.tensor(500))
    theirs = guider.forward(cond, uncond).pred
    ours = apply_cfg_zero_star(noise_pred=torch.cat([uncond, cond]), guidance_active=True, guidance_scale=5.0, guidance_rescale=0.2)
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)


def test_cfg_zero_star_zero_init_step_in_a_loop():
    loop = Loop(Graph.wrap(apply_cfg_zero_star), over="timesteps", item="t", carry={"noise_pred": "noise_pred"})
    g = Graph("zero_init").add("loop", loop)
    for name in ("timesteps", "noise_pred", "guidance_active"):
        g.expose_input(name, f"loop.{name}")
    g.expose_output("noise_pred", "loop.noise_pred")
    cond, uncond = _preds(4)
    out = g(timesteps=torch.tensor([999]), noise_pred=torch.cat([uncond, cond]), guidance_active=True)
    assert out.shape == cond.shape and not out.any()


def test_apg_matches_diffusers_with_momentum_and_norm_cap():
    from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer, normalized_guidance

    buffer, running = MomentumBuffer(-0.5), None
    for step in range(3):
        cond, uncond = _preds(10 + step)
        theirs = normalized_guidance(cond, uncond, 4.0, buffer, eta=0.3, norm_threshold=2.0)
        ours, running = project_guidance(cond, uncond, 4.0, 0.3, 2.0, running, -0.5)
        torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)


def test_apg_block_in_prediction_space_matches_diffusers_guider():
    from diffusers.guiders import AdaptiveProjectedGuidance

    cond, uncond = _preds(5)
    guider = AdaptiveProjectedGuidance(guidance_scale=5.0, eta=0.5, adaptive_projected_guidance_rescale=10.0)
    guider.set_state(step=1, num_inference_steps=4, timestep=torch.tensor(500))
    theirs = guider.forward(cond, uncond).pred
    block = apply_apg.with_config(eta=0.5, norm_threshold=10.0, space="noise_pred")
    ours = block(components={"scheduler": None}, noise_pred=torch.cat([uncond, cond]), guidance_active=True, guidance_scale=5.0)
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)


def test_apg_x0_space_is_linear_round_trip():
    """In x0 space with eta=1 and no cap, APG reduces to CFG (the update is linear in the prediction)."""
    from diffblocks.schedulers import DDIMScheduler

    cond, uncond = _preds(6)
    x = torch.randn(cond.shape, generator=torch.Generator().manual_seed(7))
    block = apply_apg.with_config(eta=1.0, norm_threshold=0.0, space="x0")
    ours = block(components={"scheduler": DDIMScheduler(beta_schedule="scaled_linear")}, noise_pred=torch.cat([uncond, cond]),
                 guidance_active=True, guidance_scale=3.0, latent_model_input=x, t=torch.tensor(601))
    torch.testing.assert_close(ours, uncond + 3.0 * (cond - uncond), atol=1e-5, rtol=0)


def test_prepare_batches_uncond_first_and_off_runs_one_pass():
    x, pos, neg = torch.ones(1, 4, 2, 2), torch.ones(1, 3, 8), torch.zeros(1, 3, 8)
    on = prepare_guidance(latent_model_input=x, prompt_embeds=pos, negative_prompt_embeds=neg, guidance_scale=5.0)
    assert on.guidance_active and on.sample.shape[0] == 2
    torch.testing.assert_close(on.encoder_hidden_states, torch.cat([neg, pos]))
    off = prepare_guidance(latent_model_input=x, prompt_embeds=pos, negative_prompt_embeds=neg, guidance_scale=1.0)
    assert not off.guidance_active and off.sample is x and off.encoder_hidden_states is pos
    none = prepare_unguided(latent_model_input=x, prompt_embeds=pos, negative_prompt_embeds=neg, guidance_scale=9.0)
    assert not none.guidance_active and none.sample is x


def test_guidance_step_range():
    """start/stop limit guidance to a fraction of the loop: with 4 steps and [0.5, 1.0), steps 2 and 3."""
    body = Graph.wrap(prepare_guidance.with_config(start=0.5, stop=1.0))
    seen = []
    # Loop over the guidance scale itself (a constant 5): the loop supplies ctx.step / ctx.total.
    loop = Loop(body, over="scales", item="guidance_scale", carry={"latent_model_input": "sample"})
    g = Graph("range").add("loop", loop)
    for name in ("scales", "latent_model_input", "prompt_embeds", "negative_prompt_embeds"):
        g.expose_input(name, f"loop.{name}")
    g.expose_output("latent_model_input", "loop.latent_model_input")

    def record(step, t, carried):
        seen.append(carried["latent_model_input"].shape[0])
        return {"latent_model_input": carried["latent_model_input"][-1:]}

    g.run(inputs={"scales": [5.0] * 4, "latent_model_input": torch.ones(1, 4, 2, 2),
                  "prompt_embeds": torch.ones(1, 3, 8), "negative_prompt_embeds": torch.zeros(1, 3, 8)},
          callbacks=[record], progress=False)
    assert seen == [1, 1, 2, 2]
