"""The adapter methods of :class:`~diffblocks.components.ComponentsManager` (and, delegating to
them, of :class:`~diffblocks.pipeline.Pipeline`), with diffusers' names and call forms.

Adapters attach to **components**, not to a pipeline class: any graph that runs on the
manager's ``unet`` / ``transformer`` / ``text_encoder`` sees them, presets and hand-built graphs
alike, before and after a block swap. A LoRA file's keys are sorted to the components by their
prefixes (``unet.``, ``text_encoder.``, ``lora_te1_`` ...); ``component=`` loads a file with no
prefixes (a single model's peft state dict) into one named component::

    manager.load_lora_weights("style.safetensors", adapter_name="style")
    manager.load_lora_weights("te.safetensors", adapter_name="te", component="text_encoder")
    manager.set_adapters(["style", "te"], adapter_weights=[0.8, 0.5])
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any

import torch

from diffblocks.adapters.files import DEFAULT_EMBEDDING_FILE, DEFAULT_LORA_FILE, read_adapter_file
from diffblocks.adapters.formats import apply_adapter_metadata, split_lora_state_dict
from diffblocks.adapters.state import adapter_names, lora_record
from diffblocks.adapters.textual_inversion import add_embedding, embeddings_in
from diffblocks.adapters.weights import LoraError, LoraFormatError

__all__ = ["AdapterMethods", "LoadedAdapter", "PipelineAdapterMethods"]

Weights = float | Mapping[str, float]


def _ops() -> ModuleType:
    """The peft-backed operations, imported on first use: a cold peft import pulls in much of
    transformers (seconds), which ``import diffblocks`` and runs without adapters should not pay."""
    import diffblocks.adapters.lora as ops

    return ops


@dataclass
class LoadedAdapter:
    """One loaded LoRA or embedding as recorded for reproducibility (PNG metadata, save_pretrained)."""

    kind: str  # "lora" or "embedding"
    adapter_name: str
    path: str
    sha256: str
    components: list[str]
    weight: float | dict[str, float] = 1.0
    tokens: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class AdapterMethods:
    """Mixin for a Mapping of components (the ComponentsManager): LoRA and embedding methods."""

    def _adapter_log(self) -> dict[str, LoadedAdapter]:
        log = self.__dict__.get("_adapters")
        if log is None:
            log = self.__dict__["_adapters"] = {}
        return log

    @property
    def loaded_adapters(self) -> list[LoadedAdapter]:
        """Every LoRA and embedding loaded, in load order (what a run records)."""
        return list(self._adapter_log().values())

    def _modules_of(self, name: str) -> Mapping[str, torch.nn.Module] | None:
        if name not in self:  # type: ignore[operator]
            return None
        obj = self[name]  # type: ignore[index]
        return dict(obj.named_modules()) if isinstance(obj, torch.nn.Module) else None

    def _adapted(self) -> Iterator[tuple[str, torch.nn.Module]]:
        loaded = getattr(self, "loaded", None)
        for name in (loaded if loaded is not None else list(self)):  # type: ignore[call-overload]
            obj = self[name]  # type: ignore[index]
            if isinstance(obj, torch.nn.Module) and lora_record(obj) is not None:
                yield name, obj

    def load_lora_weights(
        self,
        pretrained_model_name_or_path_or_dict: str | os.PathLike[str] | Mapping[str, torch.Tensor],
        weight_name: str | None = None,
        adapter_name: str | None = None,
        *,
        component: str | None = None,
        allow_pickle: bool = False,
    ) -> str:
        """Load a LoRA (file, folder with ``pytorch_lora_weights.safetensors`` unless ``weight_name``
        says otherwise, Hub repo, or state dict) into the components its keys name, or into
        ``component``. Returns the adapter name (``default_N`` when not given). Keys that match
        no module are one error listing them; nothing is attached unless every part fits."""
        ops = _ops()
        log = self._adapter_log()
        name = adapter_name or f"default_{sum(a.kind == 'lora' for a in log.values())}"
        if name in log:
            raise LoraError(f"an adapter named {name!r} is already loaded; pass another adapter_name")
        hub = {k: getattr(self, k) for k in ("cache_dir", "token", "local_files_only") if hasattr(self, k)}
        file = read_adapter_file(pretrained_model_name_or_path_or_dict, weight_name=weight_name,
                                 default=DEFAULT_LORA_FILE, allow_pickle=allow_pickle, hub=hub)
        if component is not None and component not in self:  # type: ignore[operator]
            raise KeyError(f"no component '{component}' in this manager; it declares {sorted(self)}")  # type: ignore[call-overload]
        modules = (lambda c: self._modules_of(c) if c == component else None) if component else self._modules_of
        denoiser = "transformer" if "transformer" in self else "unet"  # type: ignore[operator]
        layers = split_lora_state_dict(file.tensors, modules, source=file.path, default_component=component,
                                       denoiser=denoiser)
        if not layers:
            raise LoraFormatError(f"{file.path}: no LoRA layers for this pipeline's components")
        layers = apply_adapter_metadata(layers, file.metadata, file.path)
        unshare = getattr(self, "_unshare", None)
        for c in layers if unshare is not None else ():
            unshare(c)  # a model shared with other pipelines is copied before it changes
        targets = {c: self[c] for c in layers}  # type: ignore[index]
        for c, module in targets.items():
            ops.check_lora_fits(module, layers[c], name)  # all parts fit before any is attached
        done: list[torch.nn.Module] = []
        try:
            for c, module in targets.items():
                ops.attach_lora(module, layers[c], name, content_id=file.sha256)
                done.append(module)
        except Exception:
            for module in done:
                ops.delete_lora(module, name)
            raise
        log[name] = LoadedAdapter("lora", name, file.path, file.sha256, sorted(targets))
        return name

    def set_adapters(self, adapter_names: str | Sequence[str], adapter_weights: Weights | Sequence[Weights] | None = None) -> None:
        """Activate exactly ``adapter_names`` with their weights (one number, or a dict per
        component such as ``{"unet": 0.7, "text_encoder": 0.3}``); others are deactivated."""
        ops = _ops()
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        log = self._adapter_log()
        if unknown := [n for n in names if n not in log or log[n].kind != "lora"]:
            raise LoraError(f"no LoRA adapter(s) {unknown}; loaded: {[n for n, a in log.items() if a.kind == 'lora']}")
        if adapter_weights is None:
            weights: list[Weights] = [1.0] * len(names)
        elif isinstance(adapter_weights, (int, float, Mapping)):
            weights = [adapter_weights] * len(names)
        else:
            weights = list(adapter_weights)
        if len(weights) != len(names):
            raise ValueError(f"{len(names)} adapter names but {len(weights)} weights")
        for component, module in self._adapted():
            per = {}
            for n, w in zip(names, weights):
                value = w.get(component, 1.0) if isinstance(w, Mapping) else w
                per[n] = float(value)
            ops.set_lora_weights(module, per)
        for n, w in zip(names, weights):
            log[n].weight = dict(w) if isinstance(w, Mapping) else float(w)
        for n, a in log.items():
            if a.kind == "lora" and n not in names:
                a.weight = 0.0

    def get_active_adapters(self) -> list[str]:
        """Names of the active LoRA adapters (in load order)."""
        active: dict[str, None] = {}
        for _, module in self._adapted():
            record = lora_record(module)
            if record is not None and record.enabled:
                active.update(dict.fromkeys(record.active))
        return [n for n in self._adapter_log() if n in active]

    def get_list_adapters(self) -> dict[str, list[str]]:
        """Which adapters each component holds."""
        return {c: adapter_names(m) for c, m in self._adapted()}

    def enable_lora(self) -> None:
        """Switch the loaded adapters back on after :meth:`disable_lora`."""
        ops = _ops()
        for _, module in self._adapted():
            ops.enable_lora(module, True)

    def disable_lora(self) -> None:
        """Run without the adapters (they stay loaded; :meth:`enable_lora` brings them back)."""
        ops = _ops()
        for _, module in self._adapted():
            ops.enable_lora(module, False)

    def fuse_lora(self, lora_scale: float = 1.0, components: Sequence[str] | None = None,
                  adapter_names: Sequence[str] | None = None) -> None:
        """Add the active adapters' updates into the base weights of ``components`` (default: all)."""
        ops = _ops()
        for c, module in self._adapted():
            if components is None or c in components:
                ops.fuse_lora(module, lora_scale, adapter_names)

    def unfuse_lora(self, components: Sequence[str] | None = None) -> None:
        """Subtract fused updates from the base weights of ``components`` (default: all)."""
        ops = _ops()
        for c, module in self._adapted():
            if components is None or c in components:
                ops.unfuse_lora(module)

    def delete_adapters(self, adapter_names: str | Sequence[str]) -> None:
        """Remove the named LoRA adapters from every component (others stay as they are)."""
        ops = _ops()
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        for _, module in list(self._adapted()):
            record = lora_record(module)
            for n in names:
                if record is not None and n in record.weights:
                    ops.delete_lora(module, n)
        for n in names:
            self._adapter_log().pop(n, None)

    def load_textual_inversion(
        self,
        pretrained_model_name_or_path: str | os.PathLike[str] | Mapping[str, Any],
        token: str | None = None,
        *,
        weight_name: str | None = None,
        text_encoder: str = "text_encoder",
        tokenizer: str = "tokenizer",
        allow_pickle: bool = False,
    ) -> list[str]:
        """Add a textual-inversion embedding's token(s) to ``tokenizer`` and ``text_encoder``
        (component names). An SDXL pair (``clip_l`` / ``clip_g``) goes to both text encoders.
        Returns the tokens added (``tok``, ``tok_1``, ... for a multi-vector embedding)."""
        hub = {k: getattr(self, k) for k in ("cache_dir", "token", "local_files_only") if hasattr(self, k)}
        file = read_adapter_file(pretrained_model_name_or_path, weight_name=weight_name, default=DEFAULT_EMBEDDING_FILE,
                                 allow_pickle=allow_pickle, hub=hub)
        parts = embeddings_in(file.tensors, file.path, token)
        targets = {"": (text_encoder, tokenizer), "clip_l": ("text_encoder", "tokenizer"),
                   "clip_g": ("text_encoder_2", "tokenizer_2")}
        for part in parts:
            missing = [c for c in targets[part] if c not in self]  # type: ignore[operator]
            if missing:
                raise KeyError(f"{file.path}: embedding part {part or 'embedding'!r} needs component(s) {missing}")
        added: list[str] = []
        names: list[str] = []
        for part, (name, vectors) in parts.items():
            encoder_name, tokenizer_name = targets[part]
            unshare = getattr(self, "_unshare", None)
            for c in (encoder_name, tokenizer_name) if unshare is not None else ():
                unshare(c)
            added += add_embedding(self[encoder_name], self[tokenizer_name], name, vectors, content_id=file.sha256)  # type: ignore[index]
            names += [encoder_name, tokenizer_name]
        first = next(iter(parts.values()))[0]
        self._adapter_log()[f"embedding:{first}"] = LoadedAdapter("embedding", first, file.path, file.sha256, names,
                                                                 tokens=list(dict.fromkeys(added)))
        return list(dict.fromkeys(added))

    def unload_lora_weights(self) -> None:
        """Remove every LoRA from every component. Fused updates stay in the weights (as in
        diffusers: fuse, unload, save bakes a LoRA in); :meth:`unfuse_lora` first drops them."""
        ops = _ops()
        for _, module in list(self._adapted()):
            ops.unload_lora(module)
        log = self._adapter_log()
        for n in [n for n, a in log.items() if a.kind == "lora"]:
            log.pop(n)


class PipelineAdapterMethods:
    """Pipeline-level names for the same methods: each delegates to ``self.components``."""

    components: Any

    def load_lora_weights(self, pretrained_model_name_or_path_or_dict: Any, weight_name: str | None = None,
                          adapter_name: str | None = None, **kwargs: Any) -> str:
        return self.components.load_lora_weights(pretrained_model_name_or_path_or_dict, weight_name, adapter_name, **kwargs)

    def set_adapters(self, adapter_names: Any, adapter_weights: Any = None) -> None:
        self.components.set_adapters(adapter_names, adapter_weights)

    def get_active_adapters(self) -> list[str]:
        return self.components.get_active_adapters()

    def get_list_adapters(self) -> dict[str, list[str]]:
        return self.components.get_list_adapters()

    def enable_lora(self) -> None:
        self.components.enable_lora()

    def disable_lora(self) -> None:
        self.components.disable_lora()

    def fuse_lora(self, lora_scale: float = 1.0, **kwargs: Any) -> None:
        self.components.fuse_lora(lora_scale, **kwargs)

    def unfuse_lora(self, **kwargs: Any) -> None:
        self.components.unfuse_lora(**kwargs)

    def delete_adapters(self, adapter_names: Any) -> None:
        self.components.delete_adapters(adapter_names)

    def unload_lora_weights(self) -> None:
        self.components.unload_lora_weights()

    def load_textual_inversion(self, pretrained_model_name_or_path: Any, token: Any = None, **kwargs: Any) -> list[str]:
        return self.components.load_textual_inversion(pretrained_model_name_or_path, token, **kwargs)
