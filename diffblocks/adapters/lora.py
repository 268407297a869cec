"""LoRA adapters on one torch module, over peft's layer classes.

peft (the ecosystem's adapter library) wraps each targeted ``nn.Linear`` / ``nn.Conv2d`` in a
LoRA layer holding one low-rank pair per adapter name. We use its functions
(``inject_adapter_in_model``, ``set_peft_model_state_dict``) and its layer methods
(``set_adapter``, ``set_scale``, ``merge``) directly on any module: our UNet and Flux
transformer and transformers' text encoders alike (transformers' own adapter methods demand a
newer peft than the registry serves, and a component-level API should not depend on them).

Each adapted module carries a small record (adapters, weights, which are active, enabled,
fused) and publishes it as ``_diffblocks_revision``: the token the graph's memoisation reads
for a component, so changing a LoRA's weight re-runs exactly the nodes using that component.

>>> import torch
>>> from diffblocks.adapters.weights import LoraWeights
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 4))
>>> attach_lora(net, {"0": LoraWeights(torch.ones(1, 4), torch.ones(4, 1))}, "ones", content_id="demo")
>>> set_lora_weights(net, {"ones": 0.5})     # delta = 0.5 * up @ down: 0.5 * 4 per output
>>> x = torch.ones(1, 4)
>>> (net(x) - net[0].get_base_layer()(x)).tolist()
[[2.0, 2.0, 2.0, 2.0]]
>>> unload_lora(net); type(net[0]).__name__
'Linear'
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence

import torch
from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.tuners_utils import BaseTunerLayer

from diffblocks.adapters.revision import publish_revision
from diffblocks.adapters.state import RECORD_ATTR as _RECORD
from diffblocks.adapters.state import AdapterRecord, adapter_names, lora_record
from diffblocks.adapters.weights import LoraError, LoraFormatError, LoraWeights

__all__ = [
    "AdapterRecord", "LoraError", "adapter_names", "adapter_state_dict", "attach_lora", "check_lora_fits", "delete_lora", "enable_lora", "fuse_lora",
    "lora_record", "set_lora_weights", "unfuse_lora", "unload_lora",
]

def _layers(module: torch.nn.Module) -> Iterator[BaseTunerLayer]:
    for sub in module.modules():
        if isinstance(sub, BaseTunerLayer):
            yield sub


def check_lora_fits(module: torch.nn.Module, layers: Mapping[str, LoraWeights], name: str) -> None:
    found = dict(module.named_modules())
    problems = []
    for path, w in layers.items():
        target = found.get(path)
        base = getattr(target, "base_layer", target)
        if isinstance(target, BaseTunerLayer) and name in getattr(target, "lora_A", {}):
            problems.append(f"{path}: already has an adapter named {name!r}")
            continue
        if isinstance(base, torch.nn.Linear):
            want_down, want_up = (w.rank, base.in_features), (base.out_features, w.rank)
        elif isinstance(base, torch.nn.Conv2d):
            want_down = (w.rank, base.in_channels // base.groups, *base.kernel_size)
            want_up = (base.out_channels, w.rank, 1, 1)
        else:
            problems.append(f"{path}: not a Linear or Conv2d layer ({type(base).__name__})")
            continue
        if tuple(w.down.shape) != want_down or tuple(w.up.shape) != want_up:
            problems.append(f"{path}: down {tuple(w.down.shape)} / up {tuple(w.up.shape)}, "
                            f"the layer needs {want_down} / {want_up}")
    if problems:
        raise LoraError(f"adapter {name!r} does not fit the model: " + "; ".join(problems[:20]))


def _config(layers: Mapping[str, LoraWeights]) -> LoraConfig:
    """One peft config giving every targeted layer its own rank and alpha (exact-name patterns)."""
    ranks = {p: w.rank for p, w in layers.items()}
    alphas = {p: w.effective_alpha for p, w in layers.items()}
    r = Counter(ranks.values()).most_common(1)[0][0]
    alpha = Counter(alphas.values()).most_common(1)[0][0]
    # peft matches pattern keys as regexes anchored at a module-name boundary: escape the dots.
    return LoraConfig(
        r=r, lora_alpha=alpha,
        target_modules="^(?:" + "|".join(re.escape(p) for p in layers) + ")$",
        rank_pattern={re.escape(p): v for p, v in ranks.items() if v != r},
        alpha_pattern={re.escape(p): v for p, v in alphas.items() if v != alpha},
    )


def attach_lora(module: torch.nn.Module, layers: Mapping[str, LoraWeights], name: str, *, content_id: str,
                weight: float = 1.0) -> None:
    """Add adapter ``name`` (module path -> LoraWeights) to ``module`` and make it active at ``weight``."""
    record = lora_record(module) or AdapterRecord()
    if "." in name or not name or hasattr(torch.nn.ModuleDict(), name):
        # peft keeps adapters in ModuleDicts: a name like "train" or "to" would clash with a method.
        raise LoraError(f"adapter name {name!r} cannot be used (empty, has a '.', or is a torch.nn.Module attribute)")
    if name in record.weights:
        raise LoraError(f"an adapter named {name!r} is already loaded; pass another adapter_name or unload it")
    if record.fused is not None:
        raise LoraError("the model has fused LoRA weights; call unfuse_lora() before loading another adapter")
    if not layers:
        raise LoraFormatError(f"adapter {name!r} has no layers for this model")
    check_lora_fits(module, layers, name)
    with warnings.catch_warnings():  # peft warns that a second adapter is a second adapter
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        inject_adapter_in_model(_config(layers), module, adapter_name=name, low_cpu_mem_usage=True)
    state: dict[str, torch.Tensor] = {}
    for path, w in layers.items():
        base = module.get_submodule(path).get_base_layer()
        like = base.weight
        state[f"{path}.lora_A.weight"] = w.down.to(like.dtype)
        state[f"{path}.lora_B.weight"] = w.up.to(like.dtype)
    result = set_peft_model_state_dict(module, state, adapter_name=name, low_cpu_mem_usage=True)
    missing = [k for k in result.missing_keys if ".lora_" in k and f".{name}." in k]
    unexpected = [k for k in result.unexpected_keys if ".lora_" in k]
    if missing or unexpected:
        raise LoraError(f"adapter {name!r}: peft left missing {missing[:5]} / unexpected {unexpected[:5]} keys")
    for layer in _layers(module):  # peft creates params where the base is; keep it so after meta loading
        for sub in (layer.lora_A, layer.lora_B):
            if name in sub:
                sub[name].to(layer.get_base_layer().weight.device)
    record.weights[name] = float(weight)
    record.content[name] = content_id
    record.active.append(name)
    object.__setattr__(module, _RECORD, record)
    _apply(module, record)


def _apply(module: torch.nn.Module, record: AdapterRecord) -> None:
    for layer in _layers(module):
        present = [n for n in record.active if n in layer.lora_A]
        layer.set_adapter(present or [n for n in record.weights if n in layer.lora_A][:1], inference_mode=True)
        if not present:
            layer.enable_adapters(False)
            continue
        layer.enable_adapters(record.enabled)
        for n in present:
            layer.set_scale(n, record.weights[n])
    publish_revision(module)


def _require(module: torch.nn.Module) -> AdapterRecord:
    record = lora_record(module)
    if record is None:
        raise LoraError(f"{type(module).__name__} has no LoRA adapters loaded")
    return record


def set_lora_weights(module: torch.nn.Module, weights: Mapping[str, float]) -> None:
    """Make exactly the adapters in ``weights`` active on ``module``, each at its weight.

    Names this module does not hold are skipped (a text-encoder-only LoRA has no UNet part).
    """
    record = _require(module)
    if record.fused is not None:
        raise LoraError("the model has fused LoRA weights; call unfuse_lora() before changing adapters")
    record.active = [n for n in record.weights if n in weights]
    for n in record.active:
        record.weights[n] = float(weights[n])
    _apply(module, record)


def enable_lora(module: torch.nn.Module, enabled: bool = True) -> None:
    """Turn every adapter of ``module`` on or off without forgetting them."""
    record = _require(module)
    if record.fused is not None and not enabled:
        raise LoraError("the model has fused LoRA weights; call unfuse_lora() before disabling them")
    record.enabled = enabled
    _apply(module, record)


def fuse_lora(module: torch.nn.Module, lora_scale: float = 1.0, adapter_names: Sequence[str] | None = None) -> None:
    """Add ``lora_scale * weight * delta`` of the active adapters into the base weights (faster calls)."""
    record = _require(module)
    if record.fused is not None:
        raise LoraError("the model's LoRA weights are already fused; call unfuse_lora() first")
    names = tuple(adapter_names) if adapter_names is not None else tuple(record.active)
    if unknown := [n for n in names if n not in record.weights]:
        raise LoraError(f"no adapter(s) {unknown}; loaded: {list(record.weights)}")
    for layer in _layers(module):
        present = [n for n in names if n in layer.lora_A]
        if not present:
            continue
        if lora_scale != 1.0:
            layer.scale_layer(lora_scale)
        layer.merge(adapter_names=present)
    record.fused = (float(lora_scale), names)
    publish_revision(module)


def unfuse_lora(module: torch.nn.Module) -> None:
    """Subtract what :func:`fuse_lora` added, restoring the base weights (to rounding error)."""
    record = _require(module)
    if record.fused is None:
        return
    for layer in _layers(module):
        if layer.merged:
            layer.unmerge()
    record.fused = None
    _apply(module, record)  # resets every scale to its weight (undoing the fuse-time lora_scale)


def delete_lora(module: torch.nn.Module, name: str) -> None:
    """Remove adapter ``name`` from ``module`` (the last one removed restores the plain layers)."""
    record = _require(module)
    if name not in record.weights:
        raise LoraError(f"no adapter named {name!r}; loaded: {list(record.weights)}")
    if len(record.weights) == 1:
        unload_lora(module)
        return
    if record.fused is not None:
        raise LoraError("the model has fused LoRA weights; call unfuse_lora() before deleting an adapter")
    for layer in list(_layers(module)):
        if name in layer.lora_A:
            layer.delete_adapter(name)
    for table in (record.weights, record.content, getattr(module, "peft_config", {})):
        table.pop(name, None)
    record.active = [n for n in record.active if n != name]
    _apply(module, record)


def adapter_state_dict(module: torch.nn.Module, name: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """Adapter ``name``'s tensors in diffusers' file layout (``<prefix>.<path>.lora_A.weight`` /
    ``lora_B.weight``; the layer's scale folded into ``lora_B`` so the file needs no alpha)."""
    out: dict[str, torch.Tensor] = {}
    lead = f"{prefix}." if prefix else ""
    for path, layer in module.named_modules():
        if isinstance(layer, BaseTunerLayer) and name in layer.lora_A:
            scale = layer.lora_alpha[name] / layer.r[name]
            out[f"{lead}{path}.lora_A.weight"] = layer.lora_A[name].weight.detach().clone()
            out[f"{lead}{path}.lora_B.weight"] = layer.lora_B[name].weight.detach() * scale
    return out


def unload_lora(module: torch.nn.Module) -> None:
    """Remove every adapter and put the plain layers back.

    Fused updates stay in the base weights, as in diffusers: ``fuse_lora()`` then
    ``unload_lora()`` bakes a LoRA into the model; call :func:`unfuse_lora` first to drop it.
    """
    record = lora_record(module)
    for path, sub in list(module.named_modules()):
        if not isinstance(sub, BaseTunerLayer):
            continue
        parent_path, _, child = path.rpartition(".")
        parent = module.get_submodule(parent_path) if parent_path else module
        setattr(parent, child, sub.get_base_layer())
    for attr in ("peft_config", "_hf_peft_config_loaded"):  # what inject_adapter_in_model left behind
        module.__dict__.pop(attr, None)
    if record is not None:
        object.__delattr__(module, _RECORD)
        publish_revision(module)
