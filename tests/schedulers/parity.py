"""Shared helpers for scheduler parity tests against diffusers (the test-only reference)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

# Every step of every trajectory must agree to this max abs difference in fp32.
ATOL = 1e-6
SHAPE = (2, 4, 8, 8)


def fake_denoiser(x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """A deterministic stand-in for a UNet: smooth in x, varying with t."""
    t = float(t)
    return 0.1 * x + 0.05 * math.sin(t / 100) + 0.02 * torch.cos(x * (1 + t / 1000))


def start_latents(init_noise_sigma: Any, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(SHAPE, generator=g) * init_noise_sigma


def trajectory(
    scheduler: Any,
    num_steps: int,
    seed: int | None = None,
    set_timesteps: Callable[[Any], None] | None = None,
    state: Any = None,
    **step_kwargs: Any,
) -> list[torch.Tensor]:
    """Run a full sampling loop (diffusers-style API); returns x after every step.

    `state` (ours only) runs the loop on an explicit per-run state instead of the object's."""
    extra = {} if state is None else {"state": state}
    if state is None:
        (set_timesteps or (lambda s: s.set_timesteps(num_steps)))(scheduler)
    timesteps = (state or scheduler).timesteps
    x = start_latents((state or scheduler).init_noise_sigma)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    xs = []
    for t in timesteps:
        model_in = scheduler.scale_model_input(x, t, **extra)
        out = fake_denoiser(model_in, t)
        kwargs = dict(step_kwargs)
        if gen is not None:
            kwargs["generator"] = gen
        x = scheduler.step(out, t, x, **kwargs, **extra).prev_sample
        xs.append(x)
    return xs


def assert_trajectories_match(ours: list[torch.Tensor], ref: list[torch.Tensor], atol: float = ATOL, relative: bool = False) -> None:
    """Max abs difference <= atol at every step (with `relative`, atol * max(1, max |ref|))."""
    assert len(ours) == len(ref), (len(ours), len(ref))
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert torch.isfinite(a).all(), f"step {i}: non-finite values"
        diff = (a - b).abs().max().item()
        bound = atol * max(1.0, b.abs().max().item()) if relative else atol
        assert diff <= bound, f"step {i}: max abs diff {diff:.3g} > {bound:.3g}"


def assert_schedule_match(ours: Any, ref: Any) -> None:
    """Identical timesteps (and sigmas where the reference has them) after set_timesteps."""
    assert ours.timesteps.dtype == ref.timesteps.dtype, (ours.timesteps.dtype, ref.timesteps.dtype)
    assert torch.equal(ours.timesteps, ref.timesteps), (ours.timesteps, ref.timesteps)
    if getattr(ref, "sigmas", None) is not None:
        assert torch.equal(ours.sigmas, ref.sigmas), (ours.sigmas, ref.sigmas)
    assert float(ours.init_noise_sigma) == float(ref.init_noise_sigma)
