"""Timesteps: the schedule the denoise loop walks, and the scheduler's per-run state.

``set_timesteps`` is memoisable: it outputs the timesteps and a *template* ``SchedulerState``
that nothing mutates. Blocks that advance the sampler call ``run_state(ctx, template)``, which
deep-copies the template once per run into the run context, so a cached ``set_timesteps`` can
never hand a second run a state left at the end of the first trajectory.
"""

from __future__ import annotations

import copy
from typing import Any

from ...schedulers.base import SchedulerState
from . import hints as _hints
from ...blocks.context import RunContext
from ...blocks.errors import InputError
from ...blocks.function import block
from ...blocks.ports import Outputs
from ...blocks.types import Timesteps

__all__ = ["set_timesteps", "run_state"]


def run_state(ctx: RunContext, template: SchedulerState) -> SchedulerState:
    """This run's copy of the scheduler state made by ``set_timesteps`` (created on first use)."""
    key = ("scheduler_state", id(template))
    state = ctx.run.get(key)
    if state is None:
        state = ctx.run[key] = copy.deepcopy(template)
    return state


@block("set_timesteps", version=1, components={"scheduler": _hints.SCHEDULER})
def set_timesteps(
    scheduler: Any, num_inference_steps: int = 50, strength: float = 1.0
) -> Outputs(timesteps=Timesteps, scheduler_state=SchedulerState):
    """The sampler's timesteps for ``num_inference_steps``; with ``strength`` < 1 (img2img,
    inpaint) only the last ``strength`` fraction of them, starting from a partly noised image.

    Args:
        strength: fraction of the schedule to run (1: all of it, from pure noise).
    """
    state = scheduler.new_state(num_inference_steps)
    kept = min(int(num_inference_steps * strength), num_inference_steps)
    start = max(num_inference_steps - kept, 0) * scheduler.order
    timesteps = state.timesteps[start:]
    if len(timesteps) == 0:
        raise InputError(
            f"strength={strength} with num_inference_steps={num_inference_steps} leaves no step to run; "
            "raise strength or num_inference_steps"
        )
    # The sampler starts at this index instead of looking the first timestep up (img2img restarts).
    state.begin_index = start
    return {"timesteps": timesteps, "scheduler_state": state}
