"""LoRA file layouts -> one canonical form: ``{component: {module path: LoraWeights}}``.

Layouts read here (the ones people publish):

* **diffusers / peft**: ``unet.<path>.lora_A.weight`` / ``lora_B.weight`` (also the older
  ``<path>.lora.down.weight`` / ``lora.up.weight``), prefixes ``unet.``, ``text_encoder.``,
  ``text_encoder_2.``, ``transformer.``; optional ``<path>.alpha``.
* **kohya / A1111**: ``lora_unet_<path with _>.lora_down.weight`` / ``lora_up.weight`` /
  ``alpha``; ``lora_te_`` (SD 1.5), ``lora_te1_`` / ``lora_te2_`` (SDXL); UNet names either
  diffusers' (SD 1.5 files) or the original LDM ``input_blocks_4_1_...`` (SDXL files); LoCon
  conv layers are the same keys on convolutions.
* **Flux in BFL / kohya layouts** (``diffusion_model.double_blocks...``,
  ``lora_unet_double_blocks_...``) via :mod:`diffblocks.adapters.flux_formats`.

The scale of a layer is ``alpha / rank`` when the file stores an alpha, else 1 (peft's
convention ``W + B @ A``). Every key of the file must land on a module of a component: keys
that do not are one error listing them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping

import torch

from diffblocks.adapters.flux_formats import is_flux_original_layout, to_diffusers_flux
from diffblocks.adapters.weights import LoraFormatError, LoraWeights

__all__ = ["apply_adapter_metadata", "LoraFormatError", "LoraWeights", "describe_non_lora", "split_lora_state_dict", "COMPONENT_PREFIXES"]

#: diffusers' key prefixes, in the order they are tried.
COMPONENT_PREFIXES = ("text_encoder_2", "text_encoder", "unet", "transformer")

#: kohya prefixes -> component (``lora_unet_`` means the denoiser: unet or transformer).
KOHYA_PREFIXES = {"lora_te2_": "text_encoder_2", "lora_te1_": "text_encoder", "lora_te_": "text_encoder",
                  "lora_unet_": "denoiser"}


Layers = dict[str, dict[str, LoraWeights]]

_DIFFUSERS_SUFFIXES = {".lora_A.weight": "down", ".lora_B.weight": "up", ".lora.down.weight": "down",
                       ".lora.up.weight": "up", ".lora_down.weight": "down", ".lora_up.weight": "up", ".alpha": "alpha"}
_KOHYA_SUFFIXES = {".lora_down.weight": "down", ".lora_up.weight": "up", ".alpha": "alpha"}


def describe_non_lora(keys: list[str]) -> str | None:
    """What a state dict that holds no LoRA keys looks like (None when it does look like a LoRA)."""
    if any(k.endswith(tuple(_DIFFUSERS_SUFFIXES)) or ".lora" in k for k in keys):
        return None
    if any(k.startswith("emb_params") or k in ("clip_l", "clip_g", "string_to_param") for k in keys) or (
        len(keys) == 1 and not keys[0].endswith(".weight")
    ):
        return "a textual-inversion embedding (use load_textual_inversion)"
    if any(k.startswith("model.diffusion_model.") for k in keys):
        return "a full Stable Diffusion checkpoint (single-file model weights), not a LoRA"
    if any(k.startswith(("double_blocks.", "single_blocks.")) for k in keys):
        return "a full Flux transformer checkpoint, not a LoRA"
    if any(k.startswith(("down_blocks.", "up_blocks.", "mid_block.", "conv_in.", "time_embedding.")) for k in keys):
        return "a full UNet state dict (diffusers layout), not a LoRA"
    if any(k.startswith(("encoder.", "decoder.")) for k in keys):
        return "a VAE or text-encoder state dict, not a LoRA"
    if any(".lokr_" in k or ".hada_" in k or "oft_" in k for k in keys):
        return "a LyCORIS LoKr/LoHa/OFT adapter, which is not supported (only LoRA and LoCon)"
    return f"a state dict with keys like {keys[:3]}, which is not a LoRA"


def _group(items: Mapping[str, torch.Tensor], suffixes: Mapping[str, str], bad: list[str]) -> dict[str, dict[str, torch.Tensor]]:
    """``{"<stem>": {"down": t, "up": t, "alpha": t}}`` by the key endings in ``suffixes``."""
    groups: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
    for key, value in items.items():
        for suffix, part in suffixes.items():
            if key.endswith(suffix):
                groups[key[: -len(suffix)]][part] = value
                break
        else:
            bad.append(key)
    return groups


def _weights(stem: str, parts: dict[str, torch.Tensor], bad: list[str]) -> LoraWeights | None:
    if "down" not in parts or "up" not in parts:
        bad.append(f"{stem} (has {sorted(parts)}, needs down and up)")
        return None
    alpha = parts.get("alpha")
    return LoraWeights(parts["down"], parts["up"], None if alpha is None else float(alpha.item()))


def split_lora_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    modules: Callable[[str], Mapping[str, torch.nn.Module] | None],
    *,
    source: str = "LoRA file",
    default_component: str | None = None,
    denoiser: str = "unet",
) -> Layers:
    """Sort a LoRA state dict into ``{component: {module path: LoraWeights}}``.

    ``modules(component)`` returns that component's ``named_modules()`` mapping (None when the
    pipeline has no such component); it is used to resolve kohya's underscore names and to
    split Flux's fused layers. Keys without a component prefix go to ``default_component``;
    kohya's ``lora_unet_`` keys go to ``denoiser`` ("unet" or "transformer").
    """
    keys = list(state_dict)
    if not keys:
        raise LoraFormatError(f"{source}: the file holds no tensors")
    what = describe_non_lora(keys)
    if what is not None:
        raise LoraFormatError(f"{source}: this is {what}")
    if is_flux_original_layout(keys):
        target = modules("transformer")
        if target is None:
            raise LoraFormatError(f"{source}: a Flux LoRA (BFL/kohya layout) needs a 'transformer' component")
        flux, rest = to_diffusers_flux(state_dict, target, source=source)
        layers = _split(rest, modules, source, default_component, denoiser) if rest else {}
        layers.setdefault("transformer", {}).update(flux)
        return layers
    try:
        return _split(state_dict, modules, source, default_component, denoiser)
    finally:
        _INDEX_CACHE.clear()


def _split(state_dict: Mapping[str, torch.Tensor], modules: Callable[[str], Mapping[str, torch.nn.Module] | None],
           source: str, default_component: str | None, denoiser: str) -> Layers:
    by_component: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
    kohya: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
    unknown: list[str] = []
    for key, value in state_dict.items():
        kprefix = next((p for p in KOHYA_PREFIXES if key.startswith(p)), None)
        if kprefix is not None:
            component = KOHYA_PREFIXES[kprefix]
            kohya[denoiser if component == "denoiser" else component][key[len(kprefix):]] = value
            continue
        prefix = next((p for p in COMPONENT_PREFIXES if key.startswith(p + ".")), None)
        if prefix is not None:
            by_component[prefix][key[len(prefix) + 1:]] = value
        elif default_component is not None:
            by_component[default_component][key.removeprefix("base_model.model.")] = value
        else:
            unknown.append(key)
    layers: Layers = {}
    for component, items in by_component.items():
        found = modules(component)
        groups = _group(items, _DIFFUSERS_SUFFIXES, unknown)
        layers[component] = _resolve(component, groups, found, unknown, _diffusers_path)
    for component, items in kohya.items():
        found = modules(component)
        groups = _group(items, _KOHYA_SUFFIXES, unknown)
        layers.setdefault(component, {}).update(_resolve(component, groups, found, unknown, _kohya_path))
    if unknown:
        shown = ", ".join(unknown[:20]) + (f", ... ({len(unknown)} in all)" if len(unknown) > 20 else "")
        raise LoraFormatError(f"{source}: {len(unknown)} key(s) match no module of the pipeline: {shown}")
    return {c: v for c, v in layers.items() if v}


def _resolve(component: str, groups: dict[str, dict[str, torch.Tensor]], found: Mapping[str, torch.nn.Module] | None,
             unknown: list[str], to_path: Callable[[str, Mapping[str, torch.nn.Module]], str | None]) -> dict[str, LoraWeights]:
    if found is None:
        unknown.extend(f"{stem} (no component '{component}')" for stem in groups)
        return {}
    out: dict[str, LoraWeights] = {}
    for stem, parts in groups.items():
        path = to_path(stem, found)
        if path is None:
            unknown.append(f"{component}: {stem}")
            continue
        weights = _weights(f"{component}: {stem}", parts, unknown)
        if weights is not None:
            out[path] = weights
    return out


def _is_adaptable(module: torch.nn.Module) -> bool:
    return isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) or hasattr(module, "base_layer")


def _diffusers_path(stem: str, found: Mapping[str, torch.nn.Module]) -> str | None:
    # Files saved from transformers 4 nest CLIP under ``text_model.``; transformers 5 does not.
    for candidate in (stem, stem.removeprefix("text_model."), f"text_model.{stem}"):
        module = found.get(candidate)
        if module is not None and _is_adaptable(module):
            return candidate
    return None


_INDEX_CACHE: dict[int, tuple[Mapping[str, torch.nn.Module], dict[str, str]]] = {}


def _underscore_index(found: Mapping[str, torch.nn.Module]) -> dict[str, str]:
    """kohya writes module paths with ``_`` for ``.``; map those spellings back (built once per file)."""
    held = _INDEX_CACHE.get(id(found))
    if held is None or held[0] is not found:
        _INDEX_CACHE.clear()
        held = (found, {n.replace(".", "_"): n for n, m in found.items() if n and _is_adaptable(m)})
        _INDEX_CACHE[id(found)] = held
    return held[1]


def _kohya_path(stem: str, found: Mapping[str, torch.nn.Module]) -> str | None:
    index = _underscore_index(found)
    for candidate in (stem, stem.removeprefix("text_model_"), f"text_model_{stem}", _ldm_to_diffusers(stem, found)):
        if candidate and candidate in index:
            return index[candidate]
    return None


_LDM_RESNET = {"in_layers_2": "conv1", "out_layers_3": "conv2", "emb_layers_1": "time_emb_proj",
               "skip_connection": "conv_shortcut"}


def _layers_per_block(found: Mapping[str, torch.nn.Module]) -> int:
    indices = {int(m.group(1)) for n in found if (m := re.match(r"down_blocks\.0\.resnets\.(\d+)$", n))}
    return max(indices) + 1 if indices else 2


def _ldm_to_diffusers(stem: str, found: Mapping[str, torch.nn.Module]) -> str | None:
    """kohya's SDXL names follow the original LDM UNet (``input_blocks_4_1_...``): map the block
    part onto diffusers' (``down_blocks_1_attentions_0_...``); the rest is already diffusers'."""
    per = _layers_per_block(found) + 1
    if m := re.match(r"input_blocks_(\d+)_(\d+)_(.+)$", stem):
        i, j, rest = int(m.group(1)), int(m.group(2)), m.group(3)
        block, layer = (i - 1) // per, (i - 1) % per
        if rest.startswith("op"):
            return f"down_blocks_{block}_downsamplers_0_conv"
        if j == 0:
            return f"down_blocks_{block}_resnets_{layer}_{_LDM_RESNET.get(rest, rest)}"
        return f"down_blocks_{block}_attentions_{layer}_{rest}"
    if m := re.match(r"middle_block_(\d+)_(.+)$", stem):
        i, rest = int(m.group(1)), m.group(2)
        if i == 1:
            return f"mid_block_attentions_0_{rest}"
        return f"mid_block_resnets_{i // 2}_{_LDM_RESNET.get(rest, rest)}"
    if m := re.match(r"output_blocks_(\d+)_(\d+)_(.+)$", stem):
        i, j, rest = int(m.group(1)), int(m.group(2)), m.group(3)
        block, layer = i // per, i % per
        if j == 0:
            return f"up_blocks_{block}_resnets_{layer}_{_LDM_RESNET.get(rest, rest)}"
        if rest.startswith("conv"):
            return f"up_blocks_{block}_upsamplers_0_conv"
        return f"up_blocks_{block}_attentions_{layer}_{rest}"
    return None


#: safetensors metadata key under which diffusers' ``save_lora_weights`` stores each component's
#: peft config (``"unet.r"``, ``"unet.lora_alpha"``, ``"unet.alpha_pattern"``, ...).
ADAPTER_METADATA_KEY = "lora_adapter_metadata"


def apply_adapter_metadata(layers: Layers, metadata: Mapping[str, str], source: str) -> Layers:
    """Give layers without an ``alpha`` tensor the alpha the file's peft metadata states.

    A diffusers file trained with ``lora_alpha != r`` carries no alpha tensors; its scale lives
    only in this metadata, so ignoring it would change every layer's strength.
    """
    import json
    from dataclasses import replace

    raw = metadata.get(ADAPTER_METADATA_KEY)
    if not raw:
        return layers
    try:
        config = json.loads(raw)
    except ValueError as err:
        raise LoraFormatError(f"{source}: unreadable {ADAPTER_METADATA_KEY} metadata ({err})") from err
    out: Layers = {}
    for component, found in layers.items():
        default = config.get(f"{component}.lora_alpha")
        patterns = config.get(f"{component}.alpha_pattern") or {}
        if default is None and not patterns:
            out[component] = found
            continue
        out[component] = {}
        for path, w in found.items():
            if w.alpha is None:
                match = next((v for k, v in patterns.items() if path == k or path.endswith("." + k)), default)
                w = replace(w, alpha=float(match)) if match is not None else w
            out[component][path] = w
    return out
