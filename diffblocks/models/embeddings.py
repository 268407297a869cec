"""Timestep embeddings: the sinusoidal features and the MLP that lifts them (diffusers' names)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from diffblocks.models.kernels import Linear


def timestep_embedding(
    timesteps: torch.Tensor,
    dim: int,
    flip_sin_to_cos: bool = False,
    downscale_freq_shift: float = 1.0,
    scale: float = 1.0,
    max_period: int = 10000,
) -> torch.Tensor:
    """Sinusoidal features of a 1-d batch of (possibly fractional) timesteps -> ``(N, dim)`` fp32.

    Frequencies are ``max_period ** (-i / (half - downscale_freq_shift))`` as in "Attention Is All
    You Need" / DDPM; ``flip_sin_to_cos`` puts cosines first (SD uses True, shift 0).
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(exponent / (half - downscale_freq_shift))
    args = scale * timesteps[:, None].float() * freqs[None, :]
    emb = torch.cat([args.sin(), args.cos()], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class Timesteps(nn.Module):
    """Parameter-free module form of `timestep_embedding` (diffusers' ``time_proj``)."""

    def __init__(self, num_channels: int, flip_sin_to_cos: bool, downscale_freq_shift: float, scale: float = 1.0) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.flip_sin_to_cos = flip_sin_to_cos
        self.downscale_freq_shift = downscale_freq_shift
        self.scale = scale

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        return timestep_embedding(
            timesteps, self.num_channels, self.flip_sin_to_cos, self.downscale_freq_shift, self.scale
        )


def activation(name: str) -> nn.Module:
    """The activation modules diffusers configs name."""
    table = {"silu": nn.SiLU, "swish": nn.SiLU, "mish": nn.Mish, "gelu": nn.GELU, "relu": nn.ReLU}
    if name not in table:
        raise ValueError(f"unsupported activation {name!r} (supported: {', '.join(table)})")
    return table[name]()


class TimestepEmbedding(nn.Module):
    """``linear_1 -> act -> linear_2`` on timestep features.

    ``cond_proj_dim`` adds ``cond_proj`` for a guidance-scale condition (LCM-distilled UNets).
    """

    def __init__(
        self,
        in_channels: int,
        time_embed_dim: int,
        act_fn: str = "silu",
        out_dim: int | None = None,
        cond_proj_dim: int | None = None,
        sample_proj_bias: bool = True,
    ) -> None:
        super().__init__()
        self.linear_1 = Linear(in_channels, time_embed_dim, bias=sample_proj_bias)
        self.cond_proj = Linear(cond_proj_dim, in_channels, bias=False) if cond_proj_dim else None
        self.act = activation(act_fn)
        self.linear_2 = Linear(time_embed_dim, out_dim or time_embed_dim, bias=sample_proj_bias)

    def forward(self, sample: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        if condition is not None:
            if self.cond_proj is None:
                raise ValueError("TimestepEmbedding got a condition (timestep_cond) but has no cond_proj")
            sample = sample + self.cond_proj(condition)
        return self.linear_2(self.act(self.linear_1(sample)))
