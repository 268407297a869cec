"""FlowMatchEulerDiscreteScheduler: Euler on rectified-flow models (SD3, Flux), with shift and
Flux's resolution-dependent dynamic shift (``mu``; see `calculate_shift`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from diffblocks.noise import randn_tensor
from diffblocks.schedulers.base import Scheduler, SchedulerConfigError, SchedulerOutput, SchedulerState, broadcast_like
from diffblocks.schedulers.fp32 import F32, times
from diffblocks.schedulers.multistep import check_not_finished
from diffblocks.schedulers.schedules import (
    SIGMA_SCHEDULES,
    TIME_SHIFTS,
    calculate_shift,
    check_num_steps,
    shift_sigmas,
    sigma_schedule_name,
    stretch_to_terminal,
)

__all__ = ["FlowMatchEulerDiscreteScheduler", "FlowMatchState", "calculate_shift"]


# The model predicts the velocity v = noise - x0, so dx/dsigma = v and an Euler step is exact for
# a straight path (Liu et al. 2022, arXiv:2209.03003; Esser et al. 2024, arXiv:2403.03206).


def flow_euler_step(x: Tensor, velocity: Tensor, sigma: F32, sigma_next: F32) -> Tensor:
    """x_{σ'} = x_σ + (σ' − σ)·v: one Euler step of the probability-flow ODE dx/dσ = v."""
    return x + times(velocity, F32(sigma_next) - F32(sigma))


def flow_stochastic_step(x: Tensor, velocity: Tensor, sigma: F32, sigma_next: F32, noise: Tensor) -> Tensor:
    """Jump to the predicted x0 = x − σv, then re-noise to σ' with fresh noise (ancestral flow sampling)."""
    x0 = x - times(velocity, sigma)
    return times(x0, F32(1.0) - F32(sigma_next)) + times(noise, sigma_next)


def flow_add_noise(x0: Tensor, noise: Tensor, sigma: Tensor) -> Tensor:
    """The forward process x_σ = σ·noise + (1 − σ)·x0 (img2img: noise a clean latent to the start sigma)."""
    return sigma * noise + (1.0 - sigma) * x0


@dataclass(eq=False, kw_only=True)
class FlowMatchState(SchedulerState):
    """A flow run; the sigmas are also kept as host floats so a step on an accelerator never syncs."""

    sigma_values: list[F32] = field(default_factory=list)


class FlowMatchEulerDiscreteScheduler(Scheduler):
    """Euler sampler for flow-matching models: σ runs from ~1 (noise) to 0, the model predicts v = noise − x0."""

    defaults: ClassVar[dict[str, Any]] = {
        "num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False, "base_shift": 0.5,
        "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096, "invert_sigmas": False,
        "shift_terminal": None, "use_karras_sigmas": False, "use_exponential_sigmas": False,
        "use_beta_sigmas": False, "time_shift_type": "exponential", "stochastic_sampling": False,
    }
    choices: ClassVar[dict[str, tuple[Any, ...]]] = {"time_shift_type": tuple(TIME_SHIFTS)}

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        n = self.num_train_timesteps
        # The training sigmas, shifted once; set_timesteps spaces its steps between their ends and
        # shifts again — diffusers' double shift, kept so the schedules agree.
        train = torch.from_numpy(np.linspace(1, n, n, dtype=np.float32)[::-1].copy()) / n
        if not self.config["use_dynamic_shifting"]:
            train = self.config["shift"] * train / (1 + (self.config["shift"] - 1) * train)
        self.sigma_min, self.sigma_max = train[-1].item(), train[0].item()
        self._shift = self.config["shift"]

    def _check_config(self, values: dict[str, Any]) -> None:
        sigma_schedule_name(values)

    @property
    def shift(self) -> float:
        """The static shift new runs use (``config.shift`` unless changed with `set_shift`)."""
        return self._shift

    def set_shift(self, shift: float) -> None:
        """Change the static shift of later runs (diffusers' ``set_shift``)."""
        self._shift = shift

    def new_state(
        self, num_inference_steps: int | None = None, device: torch.device | str | None = None,
        sigmas: list[float] | np.ndarray | None = None, mu: float | None = None, timesteps: list[float] | None = None,
    ) -> FlowMatchState:
        """One run: ``num_inference_steps`` evenly spaced sigmas (or the given ``sigmas``/``timesteps``),
        shifted by ``shift`` or, with ``use_dynamic_shifting``, by ``mu`` (Flux: `calculate_shift`)."""
        cfg, name, n_train = self.config, type(self).__name__, self.num_train_timesteps
        if cfg["use_dynamic_shifting"] and mu is None:
            raise ValueError(f"{name}: use_dynamic_shifting=True needs mu, e.g. calculate_shift(image_seq_len)")
        if sigmas is not None and timesteps is not None and len(sigmas) != len(timesteps):
            raise ValueError(f"{name}: sigmas ({len(sigmas)}) and timesteps ({len(timesteps)}) differ in length")
        given = sigmas if sigmas is not None else timesteps
        if given is None:
            num_inference_steps = check_num_steps(num_inference_steps, n_train, name)
        elif num_inference_steps is not None and len(given) != num_inference_steps:
            raise ValueError(f"{name}: num_inference_steps={num_inference_steps} but {len(given)} sigmas/timesteps were given")

        # the reference does this part in numpy: fp64 for the default ramp, fp32 for given values
        ts = None if timesteps is None else np.array(timesteps).astype(np.float32)
        if sigmas is None:
            if ts is None:
                ts_ramp = np.linspace(self.sigma_max * n_train, self.sigma_min * n_train, num_inference_steps)
                s = ts_ramp / n_train
            else:
                s = ts / n_train
        else:
            s = np.array(sigmas).astype(np.float32)
        s = TIME_SHIFTS[cfg["time_shift_type"]](mu, s, 1.0) if cfg["use_dynamic_shifting"] else shift_sigmas(s, self._shift)
        if cfg["shift_terminal"]:
            s = stretch_to_terminal(s, cfg["shift_terminal"])
        kind = sigma_schedule_name(cfg)
        if kind is not None:
            s = SIGMA_SCHEDULES[kind](s[-1].item(), s[0].item(), len(s))

        sig = torch.from_numpy(s).to(dtype=torch.float32, device=device)
        times = torch.from_numpy(ts).to(dtype=torch.float32, device=device) if ts is not None else sig * n_train
        if cfg["invert_sigmas"]:
            sig = 1.0 - sig
            times = sig * n_train
            sig = torch.cat([sig, torch.ones(1, device=sig.device)])
        else:
            sig = torch.cat([sig, torch.zeros(1, device=sig.device)])
        return FlowMatchState(
            timesteps=times, sigmas=sig, num_inference_steps=len(times), sigma_values=[F32(v) for v in sig.tolist()],
        )

    def _step(
        self, state: FlowMatchState, model_output: Tensor, timestep: float | Tensor, sample: Tensor,
        generator: Any = None, per_token_timesteps: Tensor | None = None, **ignored: Any,
    ) -> SchedulerOutput:
        name = type(self).__name__
        if isinstance(timestep, int) or (isinstance(timestep, Tensor) and not timestep.is_floating_point()):
            raise ValueError(
                f"{name}.step got an integer timestep (an index from enumerate?); pass a value of scheduler.timesteps"
            )
        if per_token_timesteps is not None:
            raise SchedulerConfigError(f"{name}: per_token_timesteps is not supported")
        unknown = set(ignored) - {"s_churn", "s_tmin", "s_tmax", "s_noise"}  # accepted, unused, as in diffusers
        if unknown:
            raise TypeError(f"{name}.step got unexpected argument(s) {sorted(unknown)}")
        self._init_step_index(state, timestep)
        i = check_not_finished(state, name)
        sample = sample.to(torch.float32)
        sigma, sigma_next = state.sigma_values[i], state.sigma_values[i + 1]
        if self.config["stochastic_sampling"]:
            noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
            prev_sample = flow_stochastic_step(sample, model_output, sigma, sigma_next, noise)
        else:
            prev_sample = flow_euler_step(sample, model_output, sigma, sigma_next)
        state.step_index = i + 1
        return SchedulerOutput(prev_sample=prev_sample.to(model_output.dtype))

    def scale_noise(self, sample: Tensor, timestep: Tensor, noise: Tensor, state: SchedulerState | None = None) -> Tensor:
        """Noise a clean ``sample`` to the sigma of ``timestep`` (or of the run's begin index): img2img's start."""
        state = self._current(state, "scale_noise")
        sigmas = state.sigmas.to(device=sample.device, dtype=sample.dtype)
        timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1)
        sigma = broadcast_like(sigmas[self._sigma_indices(state, timestep)], sample)
        return flow_add_noise(sample, noise, sigma)

    def add_noise(
        self, original_samples: Tensor, noise: Tensor, timesteps: Tensor, state: SchedulerState | None = None,
    ) -> Tensor:
        """Same as `scale_noise` with diffusers' add_noise argument order (flow has no alphas_cumprod)."""
        return self.scale_noise(original_samples, timesteps, noise, state=state)
