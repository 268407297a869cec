"""``MultiControlNetModel``: several ControlNets used at once, their residuals summed.

Each net sees its own control image and scale; the sum of their residuals goes to the UNet (as in
diffusers' ``MultiControlNetModel``). The ``apply_controlnet`` block also accepts a plain list.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["MultiControlNetModel", "controlnets_of"]


class MultiControlNetModel(nn.Module):
    """A list of ``ControlNetModel`` (attribute ``nets``) called with one image and scale each."""

    def __init__(self, controlnets: Sequence[nn.Module]) -> None:
        super().__init__()
        if not controlnets:
            raise ValueError("MultiControlNetModel needs at least one ControlNet")
        self.nets = nn.ModuleList(controlnets)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike[str], subfolder: str | None = "controlnet", torch_dtype: torch.dtype | None = None,
        variant: str | None = None, device: torch.device | str | None = None,
    ) -> MultiControlNetModel:
        """The nets diffusers saves for a pipeline with several ControlNets: ``<subfolder>``,
        ``<subfolder>_1``, ``<subfolder>_2`` … beside each other in a local pipeline folder."""
        options = {"torch_dtype": torch_dtype, "variant": variant, "device": device}
        return cls(_load_nets(Path(path), subfolder or "controlnet", **{k: v for k, v in options.items() if v is not None}))

    def forward(
        self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor,
        controlnet_cond: Sequence[torch.Tensor], conditioning_scale: Sequence[float], **kwargs: Any,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Summed (down residuals, mid residual) of every net."""
        down: list[torch.Tensor] | None = None
        mid: torch.Tensor | None = None
        for net, image, scale in zip(self.nets, controlnet_cond, conditioning_scale, strict=True):
            d, m = net(sample, timestep, encoder_hidden_states, image, scale, **{**kwargs, "return_dict": False})
            down = list(d) if down is None else [a + b for a, b in zip(down, d)]
            mid = m if mid is None else mid + m
        return down, mid  # type: ignore[return-value]


def _load_nets(root: Path, subfolder: str, **options: Any) -> list[nn.Module]:
    from .controlnet import ControlNetModel

    nets, index = [], 0
    while (root / (name := subfolder if index == 0 else f"{subfolder}_{index}") / "config.json").is_file():
        nets.append(ControlNetModel.from_pretrained(root, subfolder=name, **options))
        index += 1
    if not nets:
        raise FileNotFoundError(f"no ControlNet in {root / subfolder}")
    return nets


def controlnets_of(controlnet: Any) -> list[nn.Module]:
    """The nets behind a ``controlnet`` component: a ``MultiControlNetModel``, a list, or one model."""
    if isinstance(controlnet, MultiControlNetModel):
        return list(controlnet.nets)
    if isinstance(controlnet, (list, tuple, nn.ModuleList)):
        return list(controlnet)
    return [controlnet]
