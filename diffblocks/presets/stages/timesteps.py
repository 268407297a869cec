"""Timesteps: the schedule the denoise loop walks, and the scheduler's per-run state.

``set_timesteps`` makes a fresh ``SchedulerState`` on every run (it is not memoised: building a
schedule costs microseconds), and that value is what every block that reads or advances the
sampler receives on its ``scheduler_state`` edge; sampler steps advance it in place, within the
run. Nothing is looked up on the side, and however a graph is wired a second run can never
start from the state the first one left behind. (Its consumers, latent preparation and the
denoise loop, run every time anyway: sampling draws noise and advances the sampler.)
"""

from __future__ import annotations

from typing import Any

from ...schedulers.base import SchedulerState
from . import hints as _hints
from ...blocks.errors import InputError
from ...blocks.function import block
from ...blocks.ports import Outputs
from ...blocks.types import Timesteps

__all__ = ["set_timesteps"]


@block("set_timesteps", version=1, memoise=False, components={"scheduler": _hints.SCHEDULER})
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
