"""T2I-Adapter (diffusers' ``T2IAdapter``): a small conv net that turns a control image into one
feature map per UNet down block, added inside the blocks (``down_intrablock_additional_residuals``).

Unlike ControlNet it runs once per image, not once per step. Three layouts, as in diffusers:
``full_adapter`` (SD 1.x/2.x), ``full_adapter_xl`` (SDXL: one downsampling stage less, so the
features match SDXL's three-level UNet) and ``light_adapter`` (bottlenecked, 4x fewer channels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from diffblocks.models.kernels import Conv2d
from diffblocks.models.modeling import Model, ModelConfig

__all__ = ["T2IAdapter", "T2IAdapterConfig"]

ADAPTER_TYPES = ("full_adapter", "full_adapter_xl", "light_adapter")


@dataclass(frozen=True)
class T2IAdapterConfig(ModelConfig):
    """diffusers' T2IAdapter config keys."""

    class_name: ClassVar[str] = "T2IAdapter"

    in_channels: int = 3
    channels: tuple[int, ...] = (320, 640, 1280, 1280)
    num_res_blocks: int = 2
    downscale_factor: int = 8
    adapter_type: str = "full_adapter"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.adapter_type not in ADAPTER_TYPES:
            raise self.unsupported("adapter_type", self.adapter_type, list(ADAPTER_TYPES))
        if not self.channels:
            raise self.unsupported("channels", self.channels, "a non-empty list")


class _Residual(nn.Module):
    """x + conv(relu(conv3x3(x))); the second conv is 1x1 (full) or 3x3 (light)."""

    def __init__(self, channels: int, second_kernel: int) -> None:
        super().__init__()
        self.block1 = Conv2d(channels, channels, 3, padding=1)
        self.act = nn.ReLU()
        self.block2 = Conv2d(channels, channels, second_kernel, padding=second_kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block2(self.act(self.block1(x)))


class _AdapterStage(nn.Module):
    """Optional 2x average-pool, a 1x1 channel change, residual convs (and, light: a 1x1 out)."""

    def __init__(self, c_in: int, c_out: int, num_res_blocks: int, down: bool, light: bool) -> None:
        super().__init__()
        self.downsample = nn.AvgPool2d(2, stride=2, ceil_mode=True) if down else None
        width = c_out // 4 if light else c_out
        self.in_conv = Conv2d(c_in, width, 1) if light or c_in != c_out else None
        self.resnets = nn.Sequential(*(_Residual(width, 3 if light else 1) for _ in range(num_res_blocks)))
        self.out_conv = Conv2d(width, c_out, 1) if light else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        if self.in_conv is not None:
            x = self.in_conv(x)
        x = self.resnets(x)
        return self.out_conv(x) if self.out_conv is not None else x


class _AdapterBody(nn.Module):
    """The attribute level diffusers' state dicts name ``adapter.*``."""

    def __init__(self, cfg: T2IAdapterConfig) -> None:
        super().__init__()
        ch, n, light = cfg.channels, cfg.num_res_blocks, cfg.adapter_type == "light_adapter"
        pixels = cfg.in_channels * cfg.downscale_factor**2
        self.unshuffle = nn.PixelUnshuffle(cfg.downscale_factor)
        # (in, out, downsample) per stage; every stage's output is one feature map.
        if cfg.adapter_type == "full_adapter":
            self.conv_in = Conv2d(pixels, ch[0], 3, padding=1)
            stages = [(ch[0], ch[0], False)] + [(ch[i - 1], ch[i], True) for i in range(1, len(ch))]
            self.total_downscale_factor = cfg.downscale_factor * 2 ** (len(ch) - 1)
        elif cfg.adapter_type == "full_adapter_xl":
            # SDXL's UNet has one level without downsampling after the first: stage 2 downsamples.
            self.conv_in = Conv2d(pixels, ch[0], 3, padding=1)
            stages = [(ch[i - 1] if i in (1, 2) else ch[i], ch[i], i == 2) for i in range(len(ch))]
            self.total_downscale_factor = cfg.downscale_factor * 2
        else:
            self.conv_in = None
            stages = [(pixels, ch[0], False)] + [(ch[i], ch[i + 1], True) for i in range(len(ch) - 1)]
            stages.append((ch[-1], ch[-1], True))
            self.total_downscale_factor = cfg.downscale_factor * 2 ** len(ch)
        self.body = nn.ModuleList(_AdapterStage(a, b, n, down, light) for a, b, down in stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.unshuffle(x)
        if self.conv_in is not None:
            x = self.conv_in(x)
        features = []
        for stage in self.body:
            x = stage(x)
            features.append(x)
        return features


class T2IAdapter(Model):
    """``forward(image (B, 3, H, W)) -> [feature per UNet down block]``; scale them by the
    adapter's conditioning scale and pass them as ``down_intrablock_additional_residuals``."""

    config_class = T2IAdapterConfig
    config: T2IAdapterConfig

    def __init__(self, config: T2IAdapterConfig | dict[str, object] | None = None, **kwargs: object) -> None:
        super().__init__(config, **kwargs)
        self.adapter = _AdapterBody(self.config)

    @property
    def total_downscale_factor(self) -> int:
        """How much smaller than the input image the last feature map is."""
        return int(self.adapter.total_downscale_factor)

    @property
    def downscale_factor(self) -> int:
        return self.config.downscale_factor

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.adapter(x)
