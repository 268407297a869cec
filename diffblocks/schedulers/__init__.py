"""Samplers: one small file per scheduler on a shared base; configs are diffusers' scheduler_config.json."""

from .base import Scheduler, SchedulerConfig, SchedulerConfigError, SchedulerNotReadyError, SchedulerOutput, SchedulerState

__all__ = [
    "Scheduler",
    "SchedulerConfig",
    "SchedulerConfigError",
    "SchedulerNotReadyError",
    "SchedulerOutput",
    "SchedulerState",
]
