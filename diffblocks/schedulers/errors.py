"""The schedulers' error types (a module of their own so the schedule tables can raise them too)."""

from __future__ import annotations

__all__ = ["SchedulerConfigError"]


class SchedulerConfigError(ValueError):
    """A scheduler config key or value we do not know or do not support, or a request the config
    cannot serve (more inference steps than the model has training timesteps)."""
