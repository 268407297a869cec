"""Time per scheduler `step` (with scale_model_input) on a 1x4x128x128 latent: ours vs diffusers.

    python bench/schedulers.py [--steps 20] [--repeats 25] [--device cpu] [--only Euler,DDIM]

Each sampler runs a full `steps`-step loop driven by a fixed fake model output; ours and diffusers'
loops alternate (so background load hits both alike) and the time per step is the fastest of
`repeats` loops divided by the number of model calls (the minimum is the robust statistic on a
shared machine). diffusers is the
reference here only (it is a test/bench dependency, never imported by the package).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from diffblocks import schedulers as ours

SD = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "steps_offset": 1}

# (name, our class, diffusers class name, config) — one line per sampler.
SAMPLERS: list[tuple[str, type[ours.Scheduler], str, dict[str, Any]]] = [
    ("DDPM", ours.DDPMScheduler, "DDPMScheduler", {**SD, "clip_sample": False}),
    ("DDIM", ours.DDIMScheduler, "DDIMScheduler", {**SD, "clip_sample": False, "set_alpha_to_one": False}),
    ("PNDM (PLMS)", ours.PNDMScheduler, "PNDMScheduler", {**SD, "skip_prk_steps": True}),
    ("LMS", ours.LMSDiscreteScheduler, "LMSDiscreteScheduler", SD),
    ("Euler", ours.EulerDiscreteScheduler, "EulerDiscreteScheduler", SD),
    ("Euler Karras", ours.EulerDiscreteScheduler, "EulerDiscreteScheduler", {**SD, "use_karras_sigmas": True}),
    ("Euler a", ours.EulerAncestralDiscreteScheduler, "EulerAncestralDiscreteScheduler", SD),
    ("Heun", ours.HeunDiscreteScheduler, "HeunDiscreteScheduler", SD),
    ("DPM++ 2M", ours.DPMSolverMultistepScheduler, "DPMSolverMultistepScheduler", SD),
    ("DPM++ 2M Karras", ours.DPMSolverMultistepScheduler, "DPMSolverMultistepScheduler", {**SD, "use_karras_sigmas": True}),
    ("DPM++ 2M SDE Karras", ours.DPMSolverMultistepScheduler, "DPMSolverMultistepScheduler",
     {**SD, "use_karras_sigmas": True, "algorithm_type": "sde-dpmsolver++"}),
    ("DPM++ 3M", ours.DPMSolverMultistepScheduler, "DPMSolverMultistepScheduler", {**SD, "solver_order": 3}),
    ("UniPC", ours.UniPCMultistepScheduler, "UniPCMultistepScheduler", SD),
    ("UniPC 3 bh1", ours.UniPCMultistepScheduler, "UniPCMultistepScheduler", {**SD, "solver_order": 3, "solver_type": "bh1"}),
    ("Flow Euler (SD3)", ours.FlowMatchEulerDiscreteScheduler, "FlowMatchEulerDiscreteScheduler", {"shift": 3.0}),
]

SHAPE = (1, 4, 128, 128)
STOCHASTIC = ("DDPMScheduler", "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler")


def time_loop(scheduler: Any, steps: int, device: torch.device) -> float:
    """Seconds per model call for one full sampling loop."""
    gen = torch.Generator(device=device).manual_seed(0)
    model_output = torch.randn(SHAPE, generator=gen, device=device) * 0.1
    kwargs = {"generator": gen} if type(scheduler).__name__ in STOCHASTIC else {}
    scheduler.set_timesteps(steps, device=device)
    # diffusers' FlowMatchEulerDiscreteScheduler has neither init_noise_sigma nor scale_model_input
    x = torch.randn(SHAPE, generator=gen, device=device) * getattr(scheduler, "init_noise_sigma", 1.0)
    scale = getattr(scheduler, "scale_model_input", lambda sample, t: sample)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for t in scheduler.timesteps:
        model_in = scale(x, t)
        x = scheduler.step(model_output, t, x, **kwargs).prev_sample
    if device.type == "cuda":
        torch.cuda.synchronize()
    assert model_in.shape == x.shape
    return (time.perf_counter() - start) / len(scheduler.timesteps)


def compare(mine: Any, ref: Any, steps: int, device: torch.device, repeats: int) -> tuple[float, float]:
    """Fastest time per step of ours and of the reference, loops interleaved (first pair is warm-up)."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats + 1):
        times[0].append(time_loop(mine, steps, device))
        times[1].append(time_loop(ref, steps, device))
    return min(times[0][1:]), min(times[1][1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", default="", help="comma-separated sampler names from the table")
    args = parser.parse_args()
    import diffusers  # the reference, bench-only

    device = torch.device(args.device)
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    print(f"time per step, {'x'.join(map(str, SHAPE))} fp32 latent, {args.steps} steps, {device}, torch {torch.__version__}")
    print("| sampler | ours (ms) | diffusers (ms) | ratio |")
    print("|---|---:|---:|---:|")
    with torch.no_grad():
        for name, cls, ref_name, config in SAMPLERS:
            if only and name not in only:
                continue
            ref_cls = getattr(diffusers, ref_name)
            mine, ref = compare(cls.from_config(config), ref_cls.from_config(config), args.steps, device, args.repeats)
            print(f"| {name} | {mine * 1e3:.3f} | {ref * 1e3:.3f} | {mine / ref:.2g}x |", flush=True)


if __name__ == "__main__":
    main()
