"""Samplers: one small file per scheduler on a shared base; configs are diffusers' scheduler_config.json.

`SCHEDULER_CLASSES` maps diffusers class names to ours (the component registry uses it);
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

from .base import Scheduler, SchedulerConfig, SchedulerConfigError, SchedulerNotReadyError, SchedulerOutput, SchedulerState
from .ddim import DDIMScheduler
from .ddpm import DDPMScheduler
from .dpmsolver_multistep import DPMSolverMultistepScheduler
from .euler import EulerDiscreteScheduler
from .euler_ancestral import EulerAncestralDiscreteScheduler
from .flow_match_euler import FlowMatchEulerDiscreteScheduler, calculate_shift
from .heun import HeunDiscreteScheduler
from .lms import LMSDiscreteScheduler
from .names import SAMPLER_NAMES, scheduler_from_name
from .pndm import PNDMScheduler
from .unipc_multistep import UniPCMultistepScheduler

SCHEDULER_CLASSES: dict[str, type[Scheduler]] = {
    cls.__name__: cls
    for cls in (
        DDPMScheduler,
        DDIMScheduler,
        PNDMScheduler,
        LMSDiscreteScheduler,
        EulerDiscreteScheduler,
        EulerAncestralDiscreteScheduler,
        HeunDiscreteScheduler,
        DPMSolverMultistepScheduler,
        UniPCMultistepScheduler,
        FlowMatchEulerDiscreteScheduler,
    )
}

__all__ = [
    "SAMPLER_NAMES",
    "SCHEDULER_CLASSES",
    "DDIMScheduler",
    "DDPMScheduler",
    "DPMSolverMultistepScheduler",
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
