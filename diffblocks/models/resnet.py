"""Residual conv block and 2x down/up sampling shared by the UNet and the VAE (diffusers' names)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from diffblocks.models.embeddings import activation
from diffblocks.models.kernels import Conv2d, Linear


class ResnetBlock2D(nn.Module):
    """GroupNorm-act-conv twice, conditioned on the time embedding in between.

    ``time_embedding_norm`` says how: ``"default"`` adds it as a per-channel bias before the
    second norm (Stable Diffusion); ``"scale_shift"`` scales and shifts the normalised
    features instead (ADM's adaptive group norm: ``norm2(h) * (1 + scale) + shift``), which lets
    the noise level gate features rather than only offset them. ``temb_channels=None`` drops
    ``time_emb_proj`` (VAE); a 1x1 ``conv_shortcut`` appears when the channel count changes.
    The output is ``(shortcut + h) / output_scale_factor``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        temb_channels: int | None = 512,
        groups: int = 32,
        groups_out: int | None = None,
        eps: float = 1e-6,
        dropout: float = 0.0,
        non_linearity: str = "silu",
        output_scale_factor: float = 1.0,
        conv_shortcut_bias: bool = True,
        time_embedding_norm: str = "default",
    ) -> None:
        super().__init__()
        if time_embedding_norm not in ("default", "scale_shift"):
            raise ValueError(f"ResnetBlock2D: time_embedding_norm {time_embedding_norm!r}; use 'default' or 'scale_shift'")
        out_channels = out_channels or in_channels
        self.output_scale_factor = output_scale_factor
        self.scale_shift = time_embedding_norm == "scale_shift"
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps, affine=True)
        self.conv1 = Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        temb_out = 2 * out_channels if self.scale_shift else out_channels
        self.time_emb_proj = Linear(temb_channels, temb_out) if temb_channels else None
        self.norm2 = nn.GroupNorm(groups_out or groups, out_channels, eps=eps, affine=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.nonlinearity = activation(non_linearity)
        self.conv_shortcut = (
            Conv2d(in_channels, out_channels, kernel_size=1, bias=conv_shortcut_bias)
            if in_channels != out_channels
            else None
        )

    def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(self.nonlinearity(self.norm1(input_tensor)))
        t = None
        if self.time_emb_proj is not None and temb is not None:
            t = self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]
        if self.scale_shift:
            if t is None:
                raise ValueError("ResnetBlock2D: time_embedding_norm 'scale_shift' needs a time embedding")
            scale, shift = t.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h if t is None else h + t)
        h = self.conv2(self.dropout(self.nonlinearity(h)))
        shortcut = input_tensor if self.conv_shortcut is None else self.conv_shortcut(input_tensor)
        out = shortcut + h
        return out / self.output_scale_factor if self.output_scale_factor != 1.0 else out


class Downsample2D(nn.Module):
    """Stride-2 3x3 conv (or 2x2 average pool without ``use_conv``).

    ``padding=0`` is the VAE encoder's form: pad right/bottom by one, then convolve unpadded.
    """

    def __init__(self, channels: int, use_conv: bool = True, out_channels: int | None = None, padding: int = 1) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.padding = padding
        if use_conv:
            self.conv: nn.Module = Conv2d(channels, out_channels, kernel_size=3, stride=2, padding=padding)
        else:
            if out_channels != channels:
                raise ValueError("Downsample2D: average pooling cannot change the channel count")
            self.conv = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.padding == 0 and isinstance(self.conv, nn.Conv2d):
            hidden_states = F.pad(hidden_states, (0, 1, 0, 1))
        return self.conv(hidden_states)


class Upsample2D(nn.Module):
    """Nearest-neighbour 2x upsampling (or to ``output_size``) followed by a 3x3 conv."""

    def __init__(self, channels: int, use_conv: bool = True, out_channels: int | None = None) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.conv = Conv2d(channels, out_channels, kernel_size=3, padding=1) if use_conv else None

    def forward(self, hidden_states: torch.Tensor, output_size: tuple[int, int] | None = None) -> torch.Tensor:
        if output_size is None:
            hidden_states = F.interpolate(hidden_states, scale_factor=2.0, mode="nearest")
        else:
            hidden_states = F.interpolate(hidden_states, size=output_size, mode="nearest")
        return hidden_states if self.conv is None else self.conv(hidden_states)
