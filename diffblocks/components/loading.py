"""Turn a ComponentSpec into an object: resolve its class, find its files, call the loader."""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffblocks.components.fast_transformers import FAST_CLASSES, MissingWeightsError, load_text_encoder_fast
from diffblocks.components.files import folder_holds_component, inside_problem, select_component_files
from diffblocks.components.transformers_config import check_transformers_config
from diffblocks.components.spec import ComponentError, ComponentSpec
from diffblocks.models.kernels import use_cpu_kernels
from diffblocks.registry.components import ComponentTypeError, resolve_component_class
from diffblocks.registry.trust import UntrustedCodeError, load_class_from_file, refuse_repo_code

__all__ = ["LoadOptions", "load_component", "load_spec", "locate_component", "resolve_spec_class"]


@dataclass(frozen=True)
class LoadOptions:
    """How to load (not what): dtype, device, trust and Hub options.

    ``commit`` pins a Hub source to one commit sha; the manager sets it so that every
    component of a repo comes from the same commit.
    """

    torch_dtype: torch.dtype | None = None
    device: torch.device | str | None = None
    trust_remote_code: bool = False
    cache_dir: str | os.PathLike[str] | None = None
    token: str | bool | None = None
    local_files_only: bool = False
    commit: str | None = None


def _who(spec: ComponentSpec) -> str:
    hint = f" ({spec.type_hint[0]}.{spec.type_hint[1]})" if spec.type_hint else ""
    return f"component '{spec.name}'{hint}"


def resolve_spec_class(spec: ComponentSpec, options: LoadOptions, folder: Path | None = None) -> type:
    """The class for ``spec.type_hint``; a ``<library>.py`` in the component folder is remote code.

    Built-in and registered classes resolve without trust. Anything else needs
    ``trust_remote_code=True``; without it this raises before any weight is read.
    """
    if spec.type_hint is None:
        raise ComponentError(
            f"component '{spec.name}' has no type_hint, so its class is unknown; write "
            f"[library, class] for it in the index file (e.g. [\"diffusers\", \"AutoencoderKL\"])"
        )
    library, name = spec.type_hint
    try:
        return resolve_component_class(library, name, component=spec.name)
    except UntrustedCodeError:
        if not options.trust_remote_code:
            raise
    except ComponentTypeError as err:
        raise ComponentError(str(err)) from err
    # Trusted from here on: a module file shipped in the component folder, else an importable module.
    if folder is not None:
        repo_file = folder / (spec.subfolder or "") / f"{library}.py"
        if repo_file.is_file():
            return load_class_from_file(repo_file, name, trust_remote_code=True, component=spec.name)
    try:
        return resolve_component_class(library, name, trust_remote_code=True, component=spec.name)
    except ComponentTypeError as err:
        raise ComponentError(f"{_who(spec)}: {err}") from err


def _hub_folder(spec: ComponentSpec, options: LoadOptions) -> Path:
    from diffblocks.hub import list_repo_files_pinned, resolve_commit, snapshot_download_pinned

    repo = spec.pretrained_model_name_or_path
    assert repo is not None
    hub = {"cache_dir": options.cache_dir, "local_files_only": options.local_files_only, "token": options.token}
    commit = options.commit or resolve_commit(repo, revision=spec.revision, **hub)
    files = list_repo_files_pinned(repo, commit, **hub)
    if files is None:  # offline and never listed: take the whole cached subfolder
        patterns = [f"{spec.subfolder}/*"] if spec.subfolder else ["*"]
    else:
        extra = [f"{spec.type_hint[0]}.py"] if spec.type_hint and options.trust_remote_code else []
        patterns = select_component_files(files, spec.subfolder, spec.variant, extra=extra)
        if not patterns:
            listing = sorted({f.split("/")[0] for f in files if "/" in f})
            raise ComponentError(
                f"{_who(spec)}: repo '{repo}' (commit {commit}) has no files in subfolder "
                f"'{spec.subfolder}'; its folders are {listing}. Fix the subfolder in the index file."
            )
    return snapshot_download_pinned(repo, revision=commit, allow_patterns=patterns, **hub)


def locate_component(spec: ComponentSpec, options: LoadOptions) -> Path:
    """The local root folder holding the component's files (downloading them from the Hub if needed)."""
    source = spec.pretrained_model_name_or_path
    problem = inside_problem(spec.subfolder or "")
    if problem is not None:
        raise ComponentError(f"{_who(spec)}: subfolder {spec.subfolder!r} {problem}; a subfolder stays inside its model folder")
    if source is None:
        raise ComponentError(
            f"{_who(spec)} has neither a source (pretrained_model_name_or_path) nor a config; "
            "give it a folder or repo id in the index file, or pass the object itself"
        )
    if spec.is_local:
        root = Path(spec.source)  # type: ignore[arg-type]
    else:
        from diffblocks.hub import HubError

        try:
            root = _hub_folder(spec, options)
        except HubError as err:
            raise ComponentError(f"{_who(spec)}: {err}") from err
    if not root.is_dir():
        raise ComponentError(f"{_who(spec)}: folder '{root}' does not exist")
    if not folder_holds_component(str(root), spec.subfolder):
        present = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        where = root / (spec.subfolder or "")
        raise ComponentError(
            f"{_who(spec)}: '{where}' is missing or holds no weights/config (folders present in "
            f"'{root}': {present}). Fix 'subfolder' for '{spec.name}' in the index file or add its files."
        )
    return root


def _accepts(fn: Any) -> tuple[set[str], bool]:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return set(), True
    names = {n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return names, any(p.kind is p.VAR_KEYWORD for p in params.values())


def _loader_kwargs(cls: type, spec: ComponentSpec, options: LoadOptions) -> dict[str, Any]:
    names, var_kw = _accepts(cls.from_pretrained)
    is_module = issubclass(cls, torch.nn.Module)
    dtype_key = "dtype" if spec.type_hint and spec.type_hint[0] == "transformers" else "torch_dtype"
    wanted: dict[str, Any] = {"subfolder": spec.subfolder}
    if is_module:
        wanted[dtype_key] = options.torch_dtype
        wanted["variant"] = spec.variant
        if "device" in names:  # our models read tensors straight onto the device
            wanted["device"] = options.device
    kwargs = {k: v for k, v in wanted.items() if v is not None and (k in names or var_kw)}
    if not _is_ours(cls) and ("trust_remote_code" in names or var_kw):
        # Our decision, always explicit: a library left to decide may prompt on stdin.
        kwargs["trust_remote_code"] = options.trust_remote_code
    return kwargs


def _is_ours(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "diffblocks"


def _place(obj: Any, options: LoadOptions) -> Any:
    if not isinstance(obj, torch.nn.Module):
        return obj
    if options.torch_dtype is not None:
        first = next((p for p in obj.parameters() if p.is_floating_point()), None)
        if first is not None and first.dtype != options.torch_dtype:
            obj = obj.to(options.torch_dtype)
    if options.device is not None:
        first = next(obj.parameters(), None)
        if first is not None and first.device != torch.device(options.device):
            obj = obj.to(options.device)
    return use_cpu_kernels(obj).eval()


def _fast_transformers(cls: type, root: Path, spec: ComponentSpec, options: LoadOptions) -> Any | None:
    """The meta-device fast path for allow-listed transformers encoders; None to use from_pretrained."""
    if cls.__name__ not in FAST_CLASSES:
        return None
    try:
        return load_text_encoder_fast(cls, root, spec.subfolder, options.torch_dtype, spec.variant)
    except MissingWeightsError as err:
        raise ComponentError(f"{_who(spec)}: {err}; refusing to load it with random weights") from None
    except Exception:  # the fast path may only be faster, never different: let transformers decide
        return None


def _from_pretrained(cls: type, root: Path, spec: ComponentSpec, kwargs: dict[str, Any]) -> Any:
    """``cls.from_pretrained``; for a transformers model, refuse weights it would have to make up."""
    names, var_kw = _accepts(cls.from_pretrained)
    if _is_ours(cls) or not issubclass(cls, torch.nn.Module) or not ("output_loading_info" in names or var_kw):
        return cls.from_pretrained(str(root), **kwargs)
    obj, info = cls.from_pretrained(str(root), output_loading_info=True, **kwargs)
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        err = MissingWeightsError(root / (spec.subfolder or ""), missing)
        raise ComponentError(f"{_who(spec)}: {err}; refusing to load it with random weights")
    return obj


def load_component(spec: ComponentSpec, options: LoadOptions | None = None) -> Any:
    """Load one component. Every failure is a :class:`ComponentError` naming the component."""
    options = options or LoadOptions()
    if spec.config is not None:  # config-only (schedulers): no files at all
        cls = resolve_spec_class(spec, options)
        try:
            build = getattr(cls, "from_config", None)
            return build(dict(spec.config)) if build is not None else cls(**spec.config)
        except Exception as err:
            raise ComponentError(f"{_who(spec)}: building from its config failed: {err}") from err
    # Refuse untrusted or unknown classes before any download or weight read.
    cls = None if options.trust_remote_code else resolve_spec_class(spec, options)
    root = locate_component(spec, options)
    cls = cls or resolve_spec_class(spec, options, folder=root)
    if not callable(getattr(cls, "from_pretrained", None)):
        raise ComponentError(f"{_who(spec)}: class {cls.__qualname__} has no from_pretrained() to load files with")
    kwargs = _loader_kwargs(cls, spec, options)
    if not _is_ours(cls):
        refuse_repo_code(root / (spec.subfolder or ""), trust_remote_code=options.trust_remote_code, component=spec.name)
    if spec.type_hint and spec.type_hint[0] == "transformers":
        check_transformers_config(root / (spec.subfolder or ""), _who(spec))
    obj = _fast_transformers(cls, root, spec, options)
    try:
        if obj is None:
            obj = _from_pretrained(cls, root, spec, kwargs)
    except ComponentError:
        raise
    except Exception as err:
        where = root / (spec.subfolder or "")
        raise ComponentError(f"{_who(spec)}: loading from '{where}' failed: {type(err).__name__}: {err}") from err
    return _place(obj, options)


def load_spec(spec: ComponentSpec, **overrides: Any) -> Any:
    """Load one component on its own (no manager, no sharing).

    ``overrides`` may change spec fields (``variant``, ``revision``, ...) and pass loading
    options: ``torch_dtype``, ``device``, ``trust_remote_code``, ``cache_dir``, ``token``,
    ``local_files_only``::

        vae = load_spec(ComponentSpec("vae", ("diffusers", "AutoencoderKL"), "path/to/sd", subfolder="vae"))
    """
    spec_fields = {k: overrides.pop(k) for k in list(overrides) if k in spec.__dataclass_fields__}
    return load_component(spec.with_updates(**spec_fields) if spec_fields else spec, LoadOptions(**overrides))
