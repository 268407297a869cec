"""Random LoRA files in the layouts people publish, for tiny models (deterministic per seed).

lora_B is random too (peft initialises it to zeros, which would make every check pass).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors.torch import save_file

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.2")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1")


def random_pairs(module: torch.nn.Module, targets: Iterable[str], rank: int, seed: int,
                 scale: float = 0.2, convs: bool = False) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{module path: (down, up)} for every Linear whose path ends with a target (and 3x3 convs)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for path, sub in module.named_modules():
        if isinstance(sub, torch.nn.Linear) and path.endswith(tuple(targets)):
            down = torch.randn(rank, sub.in_features, generator=gen) * scale
            up = torch.randn(sub.out_features, rank, generator=gen) * scale
        elif convs and isinstance(sub, torch.nn.Conv2d) and sub.kernel_size == (3, 3) and "resnets" in path:
            down = torch.randn(rank, sub.in_channels, 3, 3, generator=gen) * scale / 3
            up = torch.randn(sub.out_channels, rank, 1, 1, generator=gen) * scale
        else:
            continue
        out[path] = (down, up)
    return out


def diffusers_layout(parts: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]]) -> dict[str, torch.Tensor]:
    """{component: pairs} -> diffusers/peft keys (``unet.<path>.lora_A.weight``), with transformers-4 CLIP names."""
    sd = {}
    for component, pairs in parts.items():
        for path, (down, up) in pairs.items():
            if component.startswith("text_encoder") and not path.startswith("text_model."):
                path = f"text_model.{path}"
            sd[f"{component}.{path}.lora_A.weight"] = down.contiguous()
            sd[f"{component}.{path}.lora_B.weight"] = up.contiguous()
    return sd


KOHYA = {"unet": "lora_unet_", "text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}


def kohya_layout(parts: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]], alpha: float,
                 sd15: bool = True) -> dict[str, torch.Tensor]:
    """kohya keys (``lora_unet_down_blocks_1_...lora_down.weight`` + ``.alpha``)."""
    sd = {}
    for component, pairs in parts.items():
        prefix = "lora_te_" if sd15 and component == "text_encoder" else KOHYA[component]
        for path, (down, up) in pairs.items():
            if component.startswith("text_encoder") and not path.startswith("text_model."):
                path = f"text_model.{path}"
            stem = prefix + path.replace(".", "_")
            sd[f"{stem}.lora_down.weight"] = down.contiguous()
            sd[f"{stem}.lora_up.weight"] = up.contiguous()
            sd[f"{stem}.alpha"] = torch.tensor(alpha)
    return sd


def save(sd: dict[str, torch.Tensor], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    return path


_RESNET_LDM = {"conv1": "in_layers.2", "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1",
               "conv_shortcut": "skip_connection"}


def ldm_unet_path(path: str, layers_per_block: int = 2) -> str:
    """diffusers UNet path -> the original LDM name kohya's SDXL files use (the inverse map)."""
    import re

    per = layers_per_block + 1
    if m := re.match(r"down_blocks\.(\d+)\.(attentions|resnets)\.(\d+)\.(.+)$", path):
        b, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        j = 1 if kind == "attentions" else 0
        rest = rest if j else _RESNET_LDM.get(rest, rest)
        return f"input_blocks.{per * b + layer + 1}.{j}.{rest}"
    if m := re.match(r"up_blocks\.(\d+)\.(attentions|resnets)\.(\d+)\.(.+)$", path):
        b, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        j = 1 if kind == "attentions" else 0
        rest = rest if j else _RESNET_LDM.get(rest, rest)
        return f"output_blocks.{per * b + layer}.{j}.{rest}"
    if m := re.match(r"mid_block\.attentions\.0\.(.+)$", path):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"mid_block\.resnets\.(\d)\.(.+)$", path):
        return f"middle_block.{2 * int(m[1])}.{_RESNET_LDM.get(m[2], m[2])}"
    raise ValueError(path)
