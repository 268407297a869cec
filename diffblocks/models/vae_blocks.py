"""The VAE's encoder and decoder, and the Gaussian posterior the encoder predicts.

Module paths follow diffusers' AutoencoderKL checkpoints (``encoder.down_blocks.N.resnets.M``,
``decoder.mid_block.attentions.0.to_q``, ``decoder.up_blocks.N.upsamplers.0.conv`` ...).
The resnet, attention and resampling layers are the ones the UNet uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from diffblocks.models.kernels import Conv2d
from diffblocks.noise import randn_tensor
from diffblocks.models.attention import Attention
from diffblocks.models.embeddings import activation
from diffblocks.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D

EPS = 1e-6  # every norm of the VAE uses this epsilon


class MidBlock(nn.Module):
    """resnet -> (single-head self-attention over all pixels) -> resnet, at the lowest resolution."""

    def __init__(self, channels: int, groups: int, act_fn: str, add_attention: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock2D(channels, channels, temb_channels=None, groups=groups, eps=EPS, non_linearity=act_fn)
            for _ in range(2))
        # One head as wide as the channels; the residual is inside the attention module.
        self.attentions = nn.ModuleList(
            [Attention(channels, heads=1, dim_head=channels, bias=True, norm_num_groups=groups, eps=EPS,
                       residual_connection=True)] if add_attention else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        for attn in self.attentions:
            x = attn(x)
        return self.resnets[1](x)


class EncoderBlock(nn.Module):
    """diffusers' ``DownEncoderBlock2D``: resnets, then an optional stride-2 conv."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int, act_fn: str,
                 downsample: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, temb_channels=None,
                          groups=groups, eps=EPS, non_linearity=act_fn)
            for i in range(layers))
        # padding=0: the encoder pads right/bottom only, as the original LDM VAE does
        self.downsamplers = nn.ModuleList([Downsample2D(out_channels, padding=0)] if downsample else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in [*self.resnets, *self.downsamplers]:
            x = layer(x)
        return x


class DecoderBlock(nn.Module):
    """diffusers' ``UpDecoderBlock2D``: resnets, then an optional nearest-2x + conv."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int, act_fn: str,
                 upsample: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, temb_channels=None,
                          groups=groups, eps=EPS, non_linearity=act_fn)
            for i in range(layers))
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels)] if upsample else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in [*self.resnets, *self.upsamplers]:
            x = layer(x)
        return x


class Encoder(nn.Module):
    """Image ``[B, in, H, W]`` -> ``[B, 2 * latent, H / 2**(L-1), W / 2**(L-1)]`` (mean, log-variance)."""

    def __init__(self, in_channels: int, latent_channels: int, block_out_channels: Sequence[int],
                 layers_per_block: int, groups: int, act_fn: str, mid_attention: bool) -> None:
        super().__init__()
        chans = list(block_out_channels)
        self.conv_in = Conv2d(in_channels, chans[0], kernel_size=3, padding=1)
        self.down_blocks = nn.ModuleList(
            EncoderBlock(chans[max(i - 1, 0)], ch, layers_per_block, groups, act_fn,
                         downsample=i < len(chans) - 1)
            for i, ch in enumerate(chans))
        self.mid_block = MidBlock(chans[-1], groups, act_fn, mid_attention)
        self.conv_norm_out = nn.GroupNorm(groups, chans[-1], eps=EPS)
        self.conv_act = activation("silu")
        self.conv_out = Conv2d(chans[-1], 2 * latent_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))


class Decoder(nn.Module):
    """Latents ``[B, latent, h, w]`` -> image ``[B, out, h * 2**(L-1), w * 2**(L-1)]``."""

    def __init__(self, latent_channels: int, out_channels: int, block_out_channels: Sequence[int],
                 layers_per_block: int, groups: int, act_fn: str, mid_attention: bool) -> None:
        super().__init__()
        chans = list(reversed(block_out_channels))
        self.conv_in = Conv2d(latent_channels, chans[0], kernel_size=3, padding=1)
        self.mid_block = MidBlock(chans[0], groups, act_fn, mid_attention)
        # one more resnet per level than the encoder has
        self.up_blocks = nn.ModuleList(
            DecoderBlock(chans[max(i - 1, 0)], ch, layers_per_block + 1, groups, act_fn,
                         upsample=i < len(chans) - 1)
            for i, ch in enumerate(chans))
        self.conv_norm_out = nn.GroupNorm(groups, chans[-1], eps=EPS)
        self.conv_act = activation("silu")
        self.conv_out = Conv2d(chans[-1], out_channels, kernel_size=3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))


class DiagonalGaussianDistribution:
    """The posterior ``N(mean, exp(logvar))`` from stacked ``[mean, logvar]`` moments ``[B, 2C, h, w]``.

    ``logvar`` is clamped to [-30, 20] as in the LDM code, which keeps ``std`` finite.
    """

    def __init__(self, parameters: torch.Tensor, deterministic: bool = False) -> None:
        self.parameters = parameters
        self.deterministic = deterministic
        self.mean, logvar = parameters.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)
        if deterministic:
            self.std = self.var = torch.zeros_like(self.mean)

    def sample(self, generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
        """``mean + std * noise``; the noise matches diffusers' for the same generator."""
        noise = randn_tensor(self.mean.shape, generator, self.parameters.device, self.parameters.dtype)
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        """The most likely latent, i.e. the mean."""
        return self.mean

    def kl(self, other: DiagonalGaussianDistribution | None = None) -> torch.Tensor:
        """KL divergence to ``other`` (default: the standard normal), summed per sample."""
        if self.deterministic:
            return torch.zeros(1)
        if other is None:
            terms = self.mean.pow(2) + self.var - 1.0 - self.logvar
        else:
            terms = ((self.mean - other.mean).pow(2) / other.var + self.var / other.var
                     - 1.0 - self.logvar + other.logvar)
        return 0.5 * terms.sum(dim=[1, 2, 3])

    def nll(self, sample: torch.Tensor, dims: Sequence[int] = (1, 2, 3)) -> torch.Tensor:
        """Negative log-likelihood of ``sample``, summed over ``dims``."""
        if self.deterministic:
            return torch.zeros(1)
        log_two_pi = 1.8378770664093453  # log(2 * pi)
        return 0.5 * (log_two_pi + self.logvar + (sample - self.mean).pow(2) / self.var).sum(dim=list(dims))
