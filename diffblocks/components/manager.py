"""ComponentsManager: lazy, shared, placed components for one or more pipelines."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffblocks.adapters.api import AdapterMethods
from diffblocks.components.index import CLASSIC_INDEX, MODULAR_INDEX, IndexFile, IndexFileError, read_index
from diffblocks.components.loading import LoadOptions, load_component, resolve_spec_class
from diffblocks.components.offload import ModelOffloader
from diffblocks.components.spec import ComponentError, ComponentSpec
from diffblocks.registry.components import is_scheduler_hint

__all__ = ["ComponentRow", "ComponentsManager", "clear_shared_components"]

DtypeArg = torch.dtype | Mapping[str, torch.dtype] | None
DeviceArg = torch.device | str | Mapping[str, torch.device | str] | None

# Loaded objects shared by every manager of the process, keyed by what identifies them
# (class, source, subfolder, variant, commit, dtype). Weak values: an object lives as long
# as some manager or user holds it, then the entry disappears by itself.
_SHARED: "weakref.WeakValueDictionary[tuple, Any]" = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.RLock()
_MISSING = object()


def clear_shared_components() -> None:
    """Forget every shared object (managers keep what they already hold)."""
    with _SHARED_LOCK:
        _SHARED.clear()


@dataclass(frozen=True)
class ComponentRow:
    """One line of :meth:`ComponentsManager.table`."""

    name: str
    class_name: str
    loaded: bool
    params: int
    bytes: int
    dtype: str
    device: str
    source: str


def _per_name(value: Any, name: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(name, value.get("default"))
    return value


def _weights_edit_count(obj: Any) -> int:
    """Sum of the in-place version counters of a module's tensors (0 for non-modules).

    In-place writes (``add_``, ``copy_``) bump a counter; moving with ``.to()`` does not.
    """
    if not isinstance(obj, torch.nn.Module):
        return 0
    return sum(t._version for t in obj.parameters()) + sum(t._version for t in obj.buffers())


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


class ComponentsManager(AdapterMethods, Mapping[str, Any]):
    """Holds component specs and loads each one on first access (``manager["unet"]``).

    The manager is the Mapping a graph executor reads: ``name in manager`` never loads,
    ``manager[name]`` loads once. A spec already loaded by *any* manager in the process
    (same class, source, subfolder, variant, commit and dtype) is shared, so two pipelines
    on one repo hold one UNet. Schedulers are never shared: they carry stepping state.

    ``torch_dtype`` and ``device`` are one value or a mapping per component name with a
    ``"default"`` entry, e.g. ``{"vae": torch.float32, "default": torch.float16}``.

    A shared object is one object: placing it (``device``, offload hooks) from one manager
    moves it for every holder. Pass ``share=False`` for a private copy.
    """

    def __init__(
        self,
        specs: Iterable[ComponentSpec] | Mapping[str, ComponentSpec] | None = None,
        *,
        torch_dtype: DtypeArg = None,
        device: DeviceArg = None,
        trust_remote_code: bool = False,
        cache_dir: str | Path | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        share: bool = True,
    ) -> None:
        self.torch_dtype = torch_dtype
        self.device = device
        self.trust_remote_code = trust_remote_code
        self.cache_dir = cache_dir
        self.token = token
        self.local_files_only = local_files_only
        self.share = share
        self.config: dict[str, Any] = {}
        self.metadata: dict[str, Any] = {}
        self._specs: dict[str, ComponentSpec] = {}
        self._objects: dict[str, Any] = {}
        self._sources: dict[str, str] = {}
        self._pins: dict[tuple[str, str | None], str] = {}
        self._baselines: dict[str, int] = {}  # tensor versions right after loading
        self._private: set[str] = set()  # names never shared (they carry adapters)
        self._offloader: ModelOffloader | None = None
        self._lock = threading.RLock()
        items = specs.values() if isinstance(specs, Mapping) else (specs or ())
        for spec in items:
            self.add(spec)

    # -- declaring components ---------------------------------------------------------------
    def add(self, spec: ComponentSpec, *, replace: bool = False) -> None:
        """Declare a component (nothing is loaded). Re-declaring a name needs ``replace=True``."""
        with self._lock:
            current = self._specs.get(spec.name)
            if current is not None and not replace and current.identity != spec.identity:
                raise ComponentError(
                    f"component '{spec.name}' is already declared from {current.source!r} "
                    f"(subfolder {current.subfolder!r}); pass replace=True to change it"
                )
            if replace and current is not None and current.identity != spec.identity:
                self.unload(spec.name)
            self._specs[spec.name] = spec

    def set(self, name: str, obj: Any) -> None:
        """Use an object you built yourself as component ``name`` (replaces any spec)."""
        with self._lock:
            self.unload(name)
            self._specs.pop(name, None)
            self._objects[name] = obj
            self._sources[name] = "set by user"

    def add_from_index(
        self,
        path_or_repo: str | Path,
        *,
        revision: str | None = None,
        names: Iterable[str] | None = None,
        replace: bool = False,
    ) -> IndexFile:
        """Declare the components of a pipeline folder or Hub repo from its index file.

        ``modular_model_index.json`` is preferred over ``model_index.json``. For a Hub repo the
        revision is resolved to one commit here, and every component from that repo is
        pinned to it. ``names`` keeps only some components. Returns the parsed index
        (its ``config`` values are merged into :attr:`config`).
        """
        source = str(path_or_repo)
        if Path(source).expanduser().is_dir():
            index = read_index(Path(source).expanduser())
        else:
            index = self._read_hub_index(source, revision)
        wanted = set(names) if names is not None else None
        if wanted is not None and (missing := wanted - set(index.specs)):
            raise IndexFileError(
                f"{index.path}: no component(s) {sorted(missing)}; it declares {sorted(index.specs)}"
            )
        for name, spec in index.specs.items():
            if wanted is None or name in wanted:
                self.add(spec, replace=replace)
        self.config.update(index.config)
        self.metadata.update(index.metadata)
        return index

    def _read_hub_index(self, repo: str, revision: str | None) -> IndexFile:
        from diffblocks.hub import list_repo_files_pinned, snapshot_download_pinned

        commit = self._commit_for(repo, revision)
        files = list_repo_files_pinned(repo, commit, **self._hub_kwargs())
        present = [n for n in (MODULAR_INDEX, CLASSIC_INDEX) if files is None or n in files]
        if not present:
            raise IndexFileError(
                f"Hub repo '{repo}' (commit {commit}) has neither {MODULAR_INDEX} nor {CLASSIC_INDEX}"
            )
        folder = snapshot_download_pinned(repo, revision=commit, allow_patterns=present, **self._hub_kwargs())
        index = read_index(folder, source=repo)
        # Pin what this repo's own index points back at, so identity (and sharing) uses the sha.
        for name, spec in list(index.specs.items()):
            if spec.pretrained_model_name_or_path == repo and spec.revision in (None, revision, commit):
                index.specs[name] = spec.with_updates(revision=commit)
        return index

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: str | Path,
        *,
        revision: str | None = None,
        names: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> "ComponentsManager":
        """A manager declaring every component of a pipeline folder or Hub repo (nothing loaded yet)."""
        manager = cls(**kwargs)
        manager.add_from_index(path_or_repo, revision=revision, names=names)
        return manager

    # -- Mapping interface (what the graph executor reads) --------------------------------------
    def __contains__(self, name: object) -> bool:
        return name in self._specs or name in self._objects

    def __iter__(self) -> Iterator[str]:
        yield from self._specs
        yield from (n for n in self._objects if n not in self._specs)

    def __len__(self) -> int:
        return len(set(self._specs) | set(self._objects))

    def __getitem__(self, name: str) -> Any:
        obj = self._objects.get(name)
        if obj is not None or name in self._objects:
            return obj
        if name not in self._specs:
            raise KeyError(
                f"no component '{name}' in this manager; it declares {sorted(self)}. "
                "Add it with manager.add(ComponentSpec(...)) or manager.set(name, obj)."
            )
        return self._load(name)

    @property
    def specs(self) -> Mapping[str, ComponentSpec]:
        """The declared specs, by name (read-only view)."""
        from types import MappingProxyType

        return MappingProxyType(self._specs)

    @property
    def loaded(self) -> frozenset[str]:
        """Names of the components loaded so far."""
        return frozenset(self._objects)

    def provider(self, names: Iterable[str]) -> "ComponentProvider":
        """A view of this manager restricted to ``names`` (what one graph branch may touch)."""
        return ComponentProvider(self, names)

    def component_fingerprint(self, name: str) -> tuple:
        """A token that changes when component ``name`` changes, computed without loading it.

        The graph executor's memoisation calls this instead of ``manager[name]``, so a cache
        key for a node whose branch does not run never forces a load. For a component from a
        spec the token is the spec's identity and dtype plus how far its tensors were changed
        in place since it was loaded (0 before loading and right after it), so a first run
        that loads the component and a second run match, while fusing weights into a loaded
        model (or bumping ``obj._diffblocks_revision``) invalidates cached outputs. A
        component given with :meth:`set` is identified by the object itself.
        """
        obj = self._objects.get(name, _MISSING)
        spec = self._specs.get(name)
        if spec is None:
            if obj is _MISSING:
                raise KeyError(f"no component '{name}' in this manager")
            return ("object", id(obj), _weights_edit_count(obj), getattr(obj, "_diffblocks_revision", None))
        if obj is _MISSING:
            return ("spec", spec.identity, str(self.dtype_for(name)), 0, None)
        changed = _weights_edit_count(obj) - self._baselines.get(name, 0)
        return ("spec", spec.identity, str(self.dtype_for(name)), changed, getattr(obj, "_diffblocks_revision", None))

    def load(self, *names: str) -> dict[str, Any]:
        """Load ``names`` now (all declared components when none are given)."""
        return {n: self[n] for n in (names or tuple(self))}

    # -- loading -------------------------------------------------------------------------------
    def dtype_for(self, name: str) -> torch.dtype | None:
        """The dtype component ``name`` is loaded in (None: as saved / torch default)."""
        return _per_name(self.torch_dtype, name)

    def device_for(self, name: str) -> torch.device | None:
        """The device component ``name`` is placed on (None: where it loads, the CPU)."""
        value = _per_name(self.device, name)
        return torch.device(value) if value is not None else None

    def _hub_kwargs(self) -> dict[str, Any]:
        return {"cache_dir": self.cache_dir, "local_files_only": self.local_files_only, "token": self.token}

    def _commit_for(self, repo: str, revision: str | None) -> str:
        """Resolve a Hub revision once per manager: later loads reuse the sha even if the branch moves."""
        from diffblocks.hub import resolve_commit

        key = (repo, revision)
        with self._lock:
            if key not in self._pins:
                self._pins[key] = resolve_commit(repo, revision=revision, **self._hub_kwargs())
            return self._pins[key]

    def _load(self, name: str) -> Any:
        with self._lock:
            if name in self._objects:
                return self._objects[name]
            spec = self._specs[name]
            base = LoadOptions(trust_remote_code=self.trust_remote_code, **self._hub_kwargs())
            # The class first: an unknown or untrusted hint fails before any network call.
            cls = None if self.trust_remote_code else resolve_spec_class(spec, base)
            commit = None
            if spec.config is None and spec.pretrained_model_name_or_path and not spec.is_local:
                from diffblocks.hub import HubError

                try:
                    commit = self._commit_for(spec.pretrained_model_name_or_path, spec.revision)
                except HubError as err:
                    raise ComponentError(f"component '{name}': {err}") from err
            is_module = cls is not None and issubclass(cls, torch.nn.Module)
            stateful = spec.config is not None or (spec.type_hint is not None and is_scheduler_hint(*spec.type_hint))
            dtype = self.dtype_for(name) if cls is None or is_module else None
            offloading = self._offloader is not None
            device = None if offloading else self.device_for(name)
            options = LoadOptions(
                torch_dtype=dtype, device=device, trust_remote_code=self.trust_remote_code,
                commit=commit, **self._hub_kwargs(),
            )
            key = (*spec.identity[:4], commit or spec.identity[4], spec.identity[5], str(dtype))
            obj = None
            if self.share and not stateful and name not in self._private:
                with _SHARED_LOCK:
                    obj = _SHARED.get(key)
                    if obj is None:
                        obj = load_component(spec, options)
                        self._remember(key, obj)
                    elif device is not None and isinstance(obj, torch.nn.Module):
                        obj.to(device)
            else:
                obj = load_component(spec, options)
            self._objects[name] = obj
            self._baselines[name] = _weights_edit_count(obj)
            self._sources[name] = self._describe_source(spec, commit)
            if offloading and isinstance(obj, torch.nn.Module):
                self._offloader.attach(name, obj)  # type: ignore[union-attr]
            return obj

    def _unshare(self, name: str) -> None:
        """Give this manager a private copy of ``name`` (it is about to get adapters, which must
        not show up in other pipelines sharing the object); a shared one is loaded again."""
        with self._lock:
            self._private.add(name)
            obj = self._objects.get(name)
            if obj is not None and any(v is obj for v in list(_SHARED.values())):
                self.unload(name)

    @staticmethod
    def _remember(key: tuple, obj: Any) -> None:
        try:
            _SHARED[key] = obj
        except TypeError:
            pass  # objects without weak-reference support are simply not shared

    @staticmethod
    def _describe_source(spec: ComponentSpec, commit: str | None) -> str:
        if spec.config is not None:
            return "config"
        where = spec.source or "?"
        if commit:
            where = f"{where}@{commit[:10]}"
        return f"{where}/{spec.subfolder}" if spec.subfolder else where

    def unload(self, name: str) -> None:
        """Drop component ``name`` (it loads again on next access). Memory is freed once no one else holds it."""
        with self._lock:
            if self._offloader is not None:
                self._offloader.detach(name)
            obj = self._objects.pop(name, None)
            self._sources.pop(name, None)
            self._baselines.pop(name, None)
        if obj is not None:
            del obj
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    # -- placement -------------------------------------------------------------------------------
    def enable_model_cpu_offload(
        self, device: torch.device | str = "cuda", *, offload_device: torch.device | str = "cpu", move: Any = None
    ) -> ModelOffloader:
        """Keep one model at a time on ``device``; the others wait on ``offload_device``.

        Applies to the models loaded now and to every model loaded later. ``move`` replaces
        ``module.to(device)`` (tests use it to record moves on a CPU-only machine).
        """
        if move is None and torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"enable_model_cpu_offload('{device}'): CUDA is not available on this machine; "
                "pass the accelerator you have (e.g. 'mps'), or do not enable offload"
            )
        with self._lock:
            self.disable_model_cpu_offload()
            self._offloader = ModelOffloader(device, offload_device, move=move)
            for name, obj in self._objects.items():
                if isinstance(obj, torch.nn.Module):
                    self._offloader.attach(name, obj)
            return self._offloader

    def disable_model_cpu_offload(self) -> None:
        """Remove the offload wrappers; models stay where they are."""
        with self._lock:
            if self._offloader is not None:
                self._offloader.detach_all()
                self._offloader = None

    @property
    def offloader(self) -> ModelOffloader | None:
        """The active offloader, if :meth:`enable_model_cpu_offload` was called."""
        return self._offloader

    # -- reporting -------------------------------------------------------------------------------
    def rows(self) -> list[ComponentRow]:
        """One row per declared or set component: class, size, dtype, device, source."""
        out = []
        for name in self:
            obj = self._objects.get(name)
            spec = self._specs.get(name)
            if obj is None:
                cls = f"{spec.type_hint[1]}" if spec and spec.type_hint else "?"
                out.append(ComponentRow(name, cls, False, 0, 0, "-", "-", self._describe_source(spec, None) if spec else "-"))
                continue
            params = nbytes = 0
            dtype = device = "-"
            if isinstance(obj, torch.nn.Module):
                tensors = list(obj.parameters()) + list(obj.buffers())
                params = sum(p.numel() for p in obj.parameters())
                nbytes = sum(t.numel() * t.element_size() for t in tensors)
                first = next((t for t in tensors if t.is_floating_point()), tensors[0] if tensors else None)
                if first is not None:
                    dtype, device = str(first.dtype).removeprefix("torch."), str(first.device)
            out.append(ComponentRow(name, type(obj).__name__, True, params, nbytes, dtype, device, self._sources.get(name, "-")))
        return out

    def table(self) -> str:
        """A readable table of every component: loaded or not, class, parameters, bytes, dtype, device, source."""
        head = ("name", "class", "loaded", "params", "bytes", "dtype", "device", "source")
        lines = [head]
        for r in self.rows():
            lines.append((r.name, r.class_name, "yes" if r.loaded else "no", f"{r.params:,}" if r.loaded else "-",
                          _fmt_bytes(r.bytes) if r.loaded else "-", r.dtype, r.device, r.source))
        widths = [max(len(str(row[i])) for row in lines) for i in range(len(head))]
        text = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines]
        text.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(text)

    def __repr__(self) -> str:
        return f"ComponentsManager({len(self)} components, loaded={sorted(self.loaded)})"


class ComponentProvider(Mapping[str, Any]):
    """A read-only, lazy view of a manager limited to some names."""

    def __init__(self, manager: ComponentsManager, names: Iterable[str]) -> None:
        self._manager = manager
        self._names = tuple(dict.fromkeys(names))
        missing = [n for n in self._names if n not in manager]
        if missing:
            raise KeyError(f"components {missing} are not declared in the manager (it has {sorted(manager)})")

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(f"component '{name}' is outside this provider's names {list(self._names)}")
        return self._manager[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def component_fingerprint(self, name: str) -> tuple:
        """See :meth:`ComponentsManager.component_fingerprint` (nothing is loaded)."""
        if name not in self._names:
            raise KeyError(f"component '{name}' is outside this provider's names {list(self._names)}")
        return self._manager.component_fingerprint(name)

    def __len__(self) -> int:
        return len(self._names)
