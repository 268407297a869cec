"""Samplers: one small file per scheduler on a shared base; configs are diffusers' scheduler_config.json.

`SCHEDULER_CLASSES` maps diffusers class names to ours (the names are listed once, in `catalog`);
`scheduler_from_name("DPM++ 2M Karras", base_config)` picks a sampler by its A1111/ComfyUI name.

    scheduler = EulerDiscreteScheduler.from_pretrained("path/to/sd15")      # reads scheduler/scheduler_config.json
    state = scheduler.new_state(30, device="cuda")                        # one run's timesteps and history
    x = noise * state.init_noise_sigma
    for t in state.timesteps:
        eps = unet(scheduler.scale_model_input(x, t, state=state), t, ...)
        x = scheduler.step(eps, t, x, state=state).prev_sample

The diffusers-style form (`scheduler.set_timesteps(30)`, then calls without `state=`) keeps
that state in `scheduler.state`.
"""

from diffblocks.schedulers.base import Scheduler, SchedulerConfig, SchedulerConfigError, SchedulerNotReadyError, SchedulerOutput, SchedulerState
from diffblocks.schedulers.catalog import COMFYUI_ALIASES, SAMPLER_NAMES, SCHEDULER_NAMES
from diffblocks.schedulers.ddim import DDIMScheduler
from diffblocks.schedulers.ddpm import DDPMScheduler
from diffblocks.schedulers.dpmsolver_multistep import DPMSolverMultistepScheduler
from diffblocks.schedulers.dpmsolver_sde import DPMSolverSDEScheduler
from diffblocks.schedulers.euler import EulerDiscreteScheduler
from diffblocks.schedulers.euler_ancestral import EulerAncestralDiscreteScheduler
from diffblocks.schedulers.flow_match_euler import FlowMatchEulerDiscreteScheduler, calculate_shift
from diffblocks.schedulers.heun import HeunDiscreteScheduler
from diffblocks.schedulers.lms import LMSDiscreteScheduler
from diffblocks.schedulers.names import scheduler_from_name
from diffblocks.schedulers.pndm import PNDMScheduler
from diffblocks.schedulers.unipc_multistep import UniPCMultistepScheduler

# Built from the catalog's names: a name listed there without a class here fails at import.
SCHEDULER_CLASSES: dict[str, type[Scheduler]] = {name: globals()[name] for name in SCHEDULER_NAMES}

__all__ = [
    "COMFYUI_ALIASES",
    "SAMPLER_NAMES",
    "SCHEDULER_CLASSES",
    "DDIMScheduler",
    "DDPMScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSDEScheduler",
    "EulerAncestralDiscreteScheduler",
    "EulerDiscreteScheduler",
    "FlowMatchEulerDiscreteScheduler",
    "HeunDiscreteScheduler",
    "LMSDiscreteScheduler",
    "PNDMScheduler",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerConfigError",
    "SchedulerNotReadyError",
    "SchedulerOutput",
    "SchedulerState",
    "UniPCMultistepScheduler",
    "calculate_shift",
    "scheduler_from_name",
]
