"""The small shared base of every scheduler: config handling, per-run state, loading and saving.

A scheduler object holds only its config and the tables derived from it (betas, training sigmas).
Everything that changes during a run (timesteps, step index, multistep history) lives in a
`SchedulerState` made by `new_state(...)`. The diffusers-style API (`set_timesteps` then `step`)
keeps one such state in `self.state`; pipeline blocks pass their own `state=` instead, so a
memoised block can never leave the object half-way through an old trajectory.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch

from diffblocks import limits
from diffblocks.fileio import atomic_write_text, read_json_object
from diffblocks.formats import DIFFUSERS_FORMAT_VERSION
from diffblocks.schedulers.errors import SchedulerConfigError
from diffblocks.schedulers.prediction import Prediction, prediction_for
from diffblocks.schedulers.schedules import alphas_cumprod_from_config, check_num_steps, spaced_timesteps

CONFIG_NAME = "scheduler_config.json"

# Values accepted for keys shared by many schedulers; a class narrows or widens them in `choices`.
COMMON_CHOICES: dict[str, tuple[Any, ...]] = {
    "beta_schedule": ("linear", "scaled_linear", "squaredcos_cap_v2"),
    "prediction_type": ("epsilon", "v_prediction", "sample"),
    "timestep_spacing": ("linspace", "leading", "trailing"),
    "final_sigmas_type": ("zero", "sigma_min"),
    "use_beta_sigmas": (False, True, None),
}


class SchedulerNotReadyError(RuntimeError):
    """`step`/`scale_model_input` called with no state and no prior `set_timesteps`."""


class SchedulerConfig(dict):
    """A scheduler's config: a read-only dict with attribute access, like diffusers' `FrozenDict`.

    Holds every config key of the class (defaults filled in), keys carried over from another
    scheduler's config (kept so switching back and forth round-trips), and `_use_default_values`,
    the keys that were not given explicitly (dropped when switching class, so the new class
    applies its own defaults — diffusers' rule).
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"scheduler config has no key {name!r}") from None

    def _frozen(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a scheduler config is read-only; build a new scheduler with from_config(config, key=value)")

    __setattr__ = __setitem__ = __delitem__ = _frozen  # type: ignore[assignment]
    update = pop = popitem = setdefault = clear = _frozen  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (SchedulerConfig, (dict(self),))

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-ready copy (arrays and tensors become lists)."""
        return {k: _jsonable(v) for k, v in self.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(eq=False, kw_only=True)
class SchedulerState:
    """Everything one sampling run changes. Samplers with history subclass it and add fields."""

    timesteps: torch.Tensor
    num_inference_steps: int | None
    sigmas: torch.Tensor | None = None
    init_noise_sigma: float | torch.Tensor = 1.0
    step_index: int | None = None
    begin_index: int | None = None


@dataclass
class SchedulerOutput:
    """What `step` returns: the sample for the next timestep and, where defined, the predicted x0."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None

    def to_tuple(self) -> tuple[torch.Tensor, ...]:
        return tuple(getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.to_tuple()[index]


def broadcast_like(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample scalars (B,) -> (B, 1, 1, ...) matching `like`'s rank."""
    values = values.flatten()
    return values.reshape(values.shape + (1,) * (like.ndim - 1))


def index_for_timestep(schedule: torch.Tensor, timestep: float | torch.Tensor) -> int:
    """Position of `timestep` in the schedule. When it occurs twice (img2img that starts mid-way on a
    repeated timestep, Heun's doubled steps), the second occurrence is the one a restart means."""
    if isinstance(timestep, torch.Tensor):
        timestep = timestep.to(schedule.device)
    hits = (schedule == timestep).nonzero()
    if len(hits) == 0:
        raise ValueError(f"timestep {float(timestep)} is not one of this run's timesteps {schedule.tolist()}")
    return int(hits[1 if len(hits) > 1 else 0].item())


#: Every Scheduler subclass by class name, filled as each class is defined. Importing any sampler
#: module runs the package ``__init__`` first, which imports them all, so the table is complete
#: whenever it is read, and this module never imports the package that imports it.
_DEFINED: dict[str, type[Scheduler]] = {}


def scheduler_class(name: str) -> type[Scheduler]:
    """The scheduler class called ``name`` (a diffusers class name); ``KeyError`` if none is."""
    return _DEFINED[name]


class Scheduler:
    """Base of all schedulers: a thin adapter over a diffusers-format config.

    Subclasses declare `defaults` (every key of diffusers' scheduler_config.json for that class with
    diffusers' default), optionally `choices` (the values we support per key), build their tables in
    `__init__`, and implement `new_state` and `_step` (plus `scale_model_input`/`add_noise` where they
    differ from the VP defaults here).
    """

    order: ClassVar[int] = 1
    defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _DEFINED[cls.__name__] = cls

    choices: ClassVar[dict[str, tuple[Any, ...]]] = {}
    alphas_cumprod: torch.Tensor  # set when the config has a beta schedule
    prediction: Prediction  # set when the config has a prediction_type

    def __init__(self, **config: Any) -> None:
        name = type(self).__name__
        unknown = sorted(set(config) - set(self.defaults))
        if unknown:
            raise SchedulerConfigError(f"{name}: unknown config key(s) {unknown}; known keys: {sorted(self.defaults)}")
        values = {**self.defaults, **config}
        for key, value in config.items():
            _check_type(name, key, value, self.defaults[key])
        if "num_train_timesteps" in values:  # the tables are this long: bound it before building them
            if values["num_train_timesteps"] < 1:
                raise SchedulerConfigError(f"{name}: num_train_timesteps must be at least 1, got {values['num_train_timesteps']}")
            try:
                limits.check("num_train_timesteps", values["num_train_timesteps"], key="num_train_timesteps", where=name)
            except limits.LimitError as err:
                raise SchedulerConfigError(str(err)) from None
        allowed = {**{k: v for k, v in COMMON_CHOICES.items() if k in self.defaults}, **self.choices}
        for key, options in allowed.items():
            if not any(_same_value(values[key], option) for option in options):
                raise SchedulerConfigError(
                    f"{name}: {key}={values[key]!r} is not supported; supported values: {', '.join(map(repr, options))}"
                )
        self._check_config(values)
        defaulted = sorted(set(self.defaults) - set(config))
        self.config = SchedulerConfig({**values, "_use_default_values": defaulted})
        self.state: SchedulerState | None = None
        if "beta_schedule" in self.defaults:  # a VP model: its training noise schedule, from the config
            self.alphas_cumprod = alphas_cumprod_from_config(self.config)
        if "prediction_type" in self.defaults:
            self.prediction = prediction_for(self.config["prediction_type"], name)

    def _check_config(self, values: Mapping[str, Any]) -> None:
        """Cross-key checks a subclass needs (e.g. one sigma schedule at a time)."""

    # ---------------------------------------------------------------- config, loading, saving

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | str | os.PathLike | Scheduler | None = None, **overrides: Any) -> Self:
        """Build from a config dict, another scheduler's `config` (any class), a scheduler, or a path to a
        scheduler_config.json / folder. Keys this class does not have are ignored (kept in `config` for
        round trips); keys given in `overrides` must be known."""
        if isinstance(config, Scheduler):
            config = config.config
        if isinstance(config, (str, os.PathLike)):
            config = _read_config(Path(config))
        if config is not None and not isinstance(config, Mapping):
            raise SchedulerConfigError(f"{cls.__name__}: a scheduler config is a JSON object, got {type(config).__name__}")
        config = dict(config or {})
        defaulted = config.pop("_use_default_values", None) or []
        defaulted = set(defaulted) if isinstance(defaulted, list) and all(isinstance(k, str) for k in defaulted) else set()
        config = {k: v for k, v in config.items() if k not in defaulted and not k.startswith("_")}
        unknown = sorted(set(overrides) - set(cls.defaults))
        if unknown:
            raise SchedulerConfigError(f"{cls.__name__}: unknown config key(s) {unknown}; known keys: {sorted(cls.defaults)}")
        known = {k: v for k, v in config.items() if k in cls.defaults}
        for key, value in {**known, **overrides}.items():  # before a subclass's __init__ reads them
            _check_type(cls.__name__, key, value, cls.defaults[key])
        scheduler = cls(**{**known, **overrides})
        hidden = {k: v for k, v in config.items() if k not in cls.defaults}
        if hidden:
            scheduler.config = SchedulerConfig({**scheduler.config, **hidden})
        return scheduler

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        subfolder: str | None = "scheduler",
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        **overrides: Any,
    ) -> Self:
        """Load `<path>/<subfolder>/scheduler_config.json` from a local folder (falling back to `<path>` itself),
        or from a Hub repo id through `diffblocks.hub.snapshot_download_pinned`; `overrides` are config keys."""
        path = Path(pretrained_model_name_or_path)
        if not path.exists() and _looks_like_repo_id(str(pretrained_model_name_or_path)):
            from diffblocks.hub import snapshot_download_pinned  # only needed off-disk

            pattern = f"{subfolder}/{CONFIG_NAME}" if subfolder else CONFIG_NAME
            path = Path(
                snapshot_download_pinned(
                    str(pretrained_model_name_or_path), revision=revision, allow_patterns=[pattern],
                    cache_dir=cache_dir, local_files_only=local_files_only, token=token,
                )
            )  # fmt: skip
        if path.is_dir() and subfolder and (path / subfolder).is_dir():
            path = path / subfolder
        return cls.from_config(_read_config(path), **overrides)

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write scheduler_config.json in diffusers' format (with `_class_name`) and return its path."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        data = {"_class_name": type(self).__name__, "_diffusers_version": DIFFUSERS_FORMAT_VERSION}
        data.update({k: v for k, v in self.config.to_dict().items() if not k.startswith("_")})
        return atomic_write_text(directory / CONFIG_NAME, json.dumps(data, indent=2, sort_keys=True) + "\n")

    @property
    def compatibles(self) -> list[type[Scheduler]]:
        """Classes this scheduler's config can switch to with `from_config` (all of ours, as in diffusers)."""
        from diffblocks.schedulers.catalog import SCHEDULER_NAMES  # plain data

        return [_DEFINED[name] for name in SCHEDULER_NAMES if name in _DEFINED]

    @property
    def num_train_timesteps(self) -> int:
        return int(self.config["num_train_timesteps"])

    def __len__(self) -> int:
        return self.num_train_timesteps

    def __repr__(self) -> str:
        config = getattr(self, "config", None) or {"_use_default_values": []}  # repr of a half-built object
        explicit = {k: v for k, v in config.items() if k not in config["_use_default_values"] and not k.startswith("_")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in explicit.items())})"

    # ---------------------------------------------------------------- per-run state

    def new_state(
        self, num_inference_steps: int | None = None, device: torch.device | str | None = None, **kwargs: Any,
    ) -> SchedulerState:
        """A fresh state for one run (reads only the config; never touches `self.state`)."""
        raise NotImplementedError

    def set_timesteps(
        self, num_inference_steps: int | None = None, device: torch.device | str | None = None, **kwargs: Any,
    ) -> None:
        """diffusers-style: start a new run held by this object (`self.state = self.new_state(...)`)."""
        self.state = self.new_state(num_inference_steps, device=device, **kwargs)

    def _reject_custom(self, **values: Any) -> None:
        """Every `new_state` takes timesteps/sigmas/mu so callers can pass them uniformly; a sampler that
        cannot use one that was given says so."""
        given = sorted(k for k, v in values.items() if v is not None)
        if given:
            raise ValueError(f"{type(self).__name__}.set_timesteps does not support custom {', '.join(given)}")

    def _step_count(self, num_inference_steps: int | None, **custom: Any) -> int:
        """`num_inference_steps`, checked, for a sampler that takes none of the custom schedules given."""
        self._reject_custom(**custom)
        return check_num_steps(num_inference_steps, self.num_train_timesteps, type(self).__name__)

    def _spaced_timesteps(self, num_steps: int) -> np.ndarray:
        """`num_steps` training timesteps per the config's `timestep_spacing` (float64, descending)."""
        return spaced_timesteps(self.config.timestep_spacing, self.num_train_timesteps, num_steps, self.config.steps_offset)

    def _current(self, state: SchedulerState | None, action: str = "step") -> SchedulerState:
        state = state if state is not None else self.state
        if state is None:
            raise SchedulerNotReadyError(
                f"{type(self).__name__}: call set_timesteps(...) before {action}() (or pass state=scheduler.new_state(...))"
            )
        return state

    def _init_step_index(self, state: SchedulerState, timestep: float | torch.Tensor) -> int:
        if state.step_index is None:
            state.step_index = state.begin_index if state.begin_index is not None else index_for_timestep(state.timesteps, timestep)
        return state.step_index

    # diffusers-compatible views of the current state
    @property
    def timesteps(self) -> torch.Tensor:
        return self._current(None, "timesteps").timesteps

    @property
    def sigmas(self) -> torch.Tensor | None:
        return self._current(None, "sigmas").sigmas

    @property
    def init_noise_sigma(self) -> float | torch.Tensor:
        return self._current(None, "init_noise_sigma").init_noise_sigma

    @property
    def num_inference_steps(self) -> int | None:
        return self._current(None, "num_inference_steps").num_inference_steps

    @property
    def step_index(self) -> int | None:
        return self._current(None, "step_index").step_index

    @property
    def begin_index(self) -> int | None:
        return self._current(None, "begin_index").begin_index

    def set_begin_index(self, begin_index: int = 0, state: SchedulerState | None = None) -> None:
        """Start the run at `begin_index` (img2img strength) instead of looking the first timestep up."""
        self._current(state, "set_begin_index").begin_index = begin_index

    # ---------------------------------------------------------------- the sampling API

    def scale_model_input(
        self, sample: torch.Tensor, timestep: float | torch.Tensor | None = None, state: SchedulerState | None = None,
    ) -> torch.Tensor:
        """The denoiser's input for `sample` at `timestep` (identity for VP samplers)."""
        return sample

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
        return_dict: bool = True,
        state: SchedulerState | None = None,
        **options: Any,
    ) -> SchedulerOutput | tuple[torch.Tensor, ...]:
        """Advance `sample` from `timestep` to the next one of the run given the denoiser's output."""
        out = self._step(self._current(state, "step"), model_output, timestep, sample, generator=generator, **options)
        return out if return_dict else out.to_tuple()

    def _step(
        self,
        state: SchedulerState,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: Any = None,
        **options: Any,
    ) -> SchedulerOutput:
        raise NotImplementedError

    def add_noise(
        self,
        original_samples: torch.Tensor,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
        state: SchedulerState | None = None,
    ) -> torch.Tensor:
        """Forward process at training `timesteps`: sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) noise."""
        sqrt_alpha_bar, sqrt_one_minus = self._signal_noise_scales(timesteps, original_samples)
        return sqrt_alpha_bar * original_samples + sqrt_one_minus * noise

    def _signal_noise_scales(self, timesteps: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sqrt(alpha_bar) and sqrt(1 - alpha_bar) at training `timesteps`, shaped to broadcast over `like`."""
        alphas_cumprod = self.alphas_cumprod.to(device=like.device, dtype=like.dtype)
        alpha_bar = alphas_cumprod[timesteps.to(like.device)]
        return broadcast_like(alpha_bar**0.5, like), broadcast_like((1 - alpha_bar) ** 0.5, like)

    def get_velocity(self, sample: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The v-prediction target at training `timesteps`: sqrt(alpha_bar) noise - sqrt(1 - alpha_bar) x0.

        `sample` is the clean x0. With zero terminal SNR, v at the last timestep is -x0: the
        model has to draw the image from the prompt alone.
        """
        sqrt_alpha_bar, sqrt_one_minus = self._signal_noise_scales(timesteps, sample)
        return sqrt_alpha_bar * noise - sqrt_one_minus * sample

    def _sigma_indices(self, state: SchedulerState, timesteps: torch.Tensor) -> list[int]:
        """Indices into `state.sigmas` for add_noise: looked up, or the run's current/begin index (img2img)."""
        if state.begin_index is None:
            schedule = state.timesteps.to(timesteps.device)
            return [index_for_timestep(schedule, t) for t in timesteps.reshape(-1)]
        index = state.step_index if state.step_index is not None else state.begin_index
        return [index] * timesteps.reshape(-1).shape[0]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_)) and bool(np.isfinite(value))


def _finite_vector(value: Any) -> bool:
    if isinstance(value, (np.ndarray, torch.Tensor)):  # given in Python
        return value.ndim == 1 and len(value) > 0 and bool(np.isfinite(np.asarray(value, dtype=np.float64)).all())
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(_is_number(x) for x in value)


# Keys whose default is null or a list: what a value may be instead.
_OPTIONAL_TYPES: dict[str, tuple[str, Any]] = {
    "trained_betas": ("null or a non-empty list of finite numbers", lambda v: v is None or _finite_vector(v)),
    "sigma_min": ("null or a finite number", lambda v: v is None or _is_number(v)),
    "sigma_max": ("null or a finite number", lambda v: v is None or _is_number(v)),
    "shift_terminal": ("null or a finite number", lambda v: v is None or _is_number(v)),
    "variance_type": ("null or a string", lambda v: v is None or isinstance(v, str)),
    "disable_corrector": ("a list of step indices", lambda v: isinstance(v, (list, tuple)) and all(
        isinstance(x, int) and not isinstance(x, bool) for x in v)),
    "solver_p": ("null", lambda v: v is None),
}


def _check_type(name: str, key: str, value: Any, default: Any) -> None:
    """A value must have its default's JSON type (a flag is a bool, a count an int, a number finite)."""
    if key in _OPTIONAL_TYPES:
        want, fits = _OPTIONAL_TYPES[key]
        ok = fits(value)
    elif isinstance(default, (bool, np.bool_)):
        ok = isinstance(value, (bool, np.bool_))
        want = "true or false"
    elif isinstance(default, int):
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        want = "an integer"
    elif isinstance(default, float) and not np.isfinite(default):  # lambda_min_clipped: -inf is its "off"
        ok = _is_number(value) or (isinstance(value, float) and np.isinf(value))
        want = "a number"
    elif isinstance(default, float):
        ok = _is_number(value)
        want = "a finite number"
    elif isinstance(default, str):
        ok = isinstance(value, str)
        want = "a string"
    else:
        return
    if not ok:
        text = repr(value)
        text = text if len(text) <= 80 else text[:77] + "..."
        raise SchedulerConfigError(f"{name}: config key {key!r} = {text} must be {want}")


def _same_value(value: Any, option: Any) -> bool:
    # True/False/None compare by identity so that 0 or 1 never pass for a flag (and vice versa)
    if isinstance(option, bool) or option is None or isinstance(value, bool):
        return value is option or (isinstance(value, np.bool_) and bool(value) is option)
    return value == option


def _looks_like_repo_id(text: str) -> bool:
    return re.fullmatch(r"[\w.-]+(/[\w.-]+)?", text) is not None and not text.startswith(".")


def _read_config(path: Path) -> dict[str, Any]:
    """Read scheduler_config.json from a file, a folder holding it, or a model folder's scheduler/."""
    candidates = [path] if path.is_file() else [path / CONFIG_NAME, path / "scheduler" / CONFIG_NAME]
    for candidate in candidates:
        if candidate.is_file():
            return read_json_object(candidate, what="scheduler config", error=SchedulerConfigError)
    raise FileNotFoundError(f"no {CONFIG_NAME} found; looked for {', '.join(str(c) for c in candidates)}")
