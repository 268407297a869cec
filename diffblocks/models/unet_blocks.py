"""The UNet's down, mid and up blocks, with or without cross-attention.

One class per position (down / mid / up); a block has cross-attention when it is given
`AttnArgs`, which is how diffusers' ``DownBlock2D`` and ``CrossAttnDownBlock2D`` (etc.) map onto
the same class. Attribute names (``resnets``, ``attentions``, ``downsamplers``,
``upsamplers``) match diffusers' state dicts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from diffblocks.models.attention import Transformer2D
from diffblocks.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D


@dataclass(frozen=True)
class ResnetArgs:
    """Settings every resnet of a UNet shares."""

    temb_channels: int
    groups: int
    eps: float
    act_fn: str
    dropout: float = 0.0
    time_embedding_norm: str = "default"

    def block(self, in_channels: int, out_channels: int, output_scale_factor: float = 1.0) -> ResnetBlock2D:
        return ResnetBlock2D(
            in_channels,
            out_channels,
            temb_channels=self.temb_channels,
            groups=self.groups,
            eps=self.eps,
            dropout=self.dropout,
            non_linearity=self.act_fn,
            output_scale_factor=output_scale_factor,
            time_embedding_norm=self.time_embedding_norm,
        )


@dataclass(frozen=True)
class AttnArgs:
    """Settings of a block's spatial transformers. ``depths`` has one entry per resnet."""

    heads: int
    cross_attention_dim: int
    depths: tuple[int, ...]
    use_linear_projection: bool
    only_cross_attention: bool
    groups: int
    dropout: float = 0.0

    def block(self, channels: int, index: int) -> Transformer2D:
        # The per-head width follows from the channel count: SD configs give the head *count*.
        return Transformer2D(
            self.heads,
            channels // self.heads,
            channels,
            num_layers=self.depths[index],
            cross_attention_dim=self.cross_attention_dim,
            norm_num_groups=self.groups,
            use_linear_projection=self.use_linear_projection,
            only_cross_attention=self.only_cross_attention,
            dropout=self.dropout,
        )


@dataclass
class CrossAttnInputs:
    """What the transformers of every block see: text states and optional additive masks."""

    encoder_hidden_states: torch.Tensor | None
    attention_mask: torch.Tensor | None = None
    encoder_attention_mask: torch.Tensor | None = None


def _attend(attn: Transformer2D | None, h: torch.Tensor, ctx: CrossAttnInputs) -> torch.Tensor:
    if attn is None:
        return h
    return attn(h, ctx.encoder_hidden_states, ctx.attention_mask, ctx.encoder_attention_mask)


class DownBlock(nn.Module):
    """``num_layers`` resnets (each followed by a transformer if ``attn``), then an optional 2x downsample."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_layers: int,
        res: ResnetArgs,
        attn: AttnArgs | None,
        add_downsample: bool,
        downsample_padding: int = 1,
    ) -> None:
        super().__init__()
        # Registration order (attentions first) follows diffusers, so saved files list keys alike.
        self.attentions = (
            nn.ModuleList(attn.block(out_channels, i) for i in range(num_layers)) if attn is not None else None
        )
        self.resnets = nn.ModuleList(res.block(in_channels if i == 0 else out_channels, out_channels) for i in range(num_layers))
        self.downsamplers = (
            nn.ModuleList([Downsample2D(out_channels, padding=downsample_padding)]) if add_downsample else None
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        temb: torch.Tensor,
        ctx: CrossAttnInputs,
        adapter_residual: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Returns the output and every intermediate state the up path will concatenate.

        ``adapter_residual`` (T2I-Adapter) lands where diffusers puts it: after the last
        transformer in a cross-attention block, on the block's output (and last skip) otherwise.
        """
        attentions = self.attentions or [None] * len(self.resnets)
        skips = []
        for i, (resnet, attn) in enumerate(zip(self.resnets, attentions)):
            hidden_states = _attend(attn, resnet(hidden_states, temb), ctx)
            if adapter_residual is not None and attn is not None and i == len(self.resnets) - 1:
                hidden_states = hidden_states + adapter_residual
            skips.append(hidden_states)
        if self.downsamplers is not None:
            hidden_states = self.downsamplers[0](hidden_states)
            skips.append(hidden_states)
        if adapter_residual is not None and self.attentions is None:
            hidden_states = skips[-1] = hidden_states + adapter_residual
        return hidden_states, skips


class MidBlock(nn.Module):
    """resnet, then (transformer, resnet) ``num_layers`` times: diffusers' ``UNetMidBlock2DCrossAttn``."""

    def __init__(
        self, channels: int, res: ResnetArgs, attn: AttnArgs, output_scale_factor: float = 1.0, num_layers: int = 1
    ) -> None:
        super().__init__()
        self.attentions = nn.ModuleList(attn.block(channels, i) for i in range(num_layers))
        self.resnets = nn.ModuleList(res.block(channels, channels, output_scale_factor) for _ in range(num_layers + 1))

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor, ctx: CrossAttnInputs) -> torch.Tensor:
        hidden_states = self.resnets[0](hidden_states, temb)
        for attn, resnet in zip(self.attentions, self.resnets[1:]):
            hidden_states = resnet(_attend(attn, hidden_states, ctx), temb)
        return hidden_states


class UpBlock(nn.Module):
    """``num_layers`` resnets over [h, skip] concatenations (each followed by a transformer if ``attn``),
    then an optional 2x upsample."""

    def __init__(
        self,
        in_channels: int,
        prev_output_channels: int,
        out_channels: int,
        num_layers: int,
        res: ResnetArgs,
        attn: AttnArgs | None,
        add_upsample: bool,
    ) -> None:
        super().__init__()
        resnets = []
        for i in range(num_layers):
            # The last skip of each up block comes from the previous (wider) level's input.
            skip_channels = in_channels if i == num_layers - 1 else out_channels
            resnet_in = prev_output_channels if i == 0 else out_channels
            resnets.append(res.block(resnet_in + skip_channels, out_channels))
        self.attentions = (
            nn.ModuleList(attn.block(out_channels, i) for i in range(num_layers)) if attn is not None else None
        )
        self.resnets = nn.ModuleList(resnets)
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels)]) if add_upsample else None

    def forward(
        self,
        hidden_states: torch.Tensor,
        skips: list[torch.Tensor],
        temb: torch.Tensor,
        ctx: CrossAttnInputs,
        upsample_size: tuple[int, int] | None = None,
        layers: slice = slice(None),
    ) -> torch.Tensor:
        """``skips`` are consumed from the end (the most recent down-path state first). ``layers``
        runs only some (resnet, attention) layers (a step cache resumes inside the block); the
        upsampler runs after the last one."""
        attentions = self.attentions or [None] * len(self.resnets)
        start, stop, _ = layers.indices(len(self.resnets))
        for i in range(start, stop):
            hidden_states = torch.cat([hidden_states, skips.pop()], dim=1)
            hidden_states = _attend(attentions[i], self.resnets[i](hidden_states, temb), ctx)
        if self.upsamplers is not None and stop == len(self.resnets):
            hidden_states = self.upsamplers[0](hidden_states, upsample_size)
        return hidden_states
