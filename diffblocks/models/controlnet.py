"""ControlNet (diffusers' ``ControlNetModel``): a trainable copy of the UNet's encoder half that
turns a control image (edges, pose, depth) into residuals added to the UNet's skips.

Reads diffusers' ``config.json`` and weights unchanged (SD 1.x / 2.x and SDXL variants). The
encoder half (conv_in, the condition embedding, down and mid blocks) is the UNet's own code,
built from a UNet view of this config; what ControlNet adds is the control-image embedding
and one zero-initialised 1x1 convolution per skip ("zero convs").
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
from torch import nn

from torch.nn import functional as F

from diffblocks.models.attention import additive_mask
from diffblocks.models.kernels import Conv2d
from diffblocks.models.modeling import Model, ModelConfig, ModelOutput
from diffblocks.models.unet_2d_condition import (
    ConditionEmbedding,
    UNet2DConditionConfig,
    UNet2DConditionModel,
    build_down_blocks,
    build_mid_block,
)
from diffblocks.models.unet_blocks import CrossAttnInputs

__all__ = ["ControlNetConfig", "ControlNetModel", "ControlNetOutput"]

_UP_FOR_DOWN = {"CrossAttnDownBlock2D": "CrossAttnUpBlock2D", "DownBlock2D": "UpBlock2D"}


@dataclass(frozen=True)
class ControlNetConfig(ModelConfig):
    """diffusers' ControlNetModel config keys (same names, defaults and meanings)."""

    class_name: ClassVar[str] = "ControlNetModel"
    fixed: ClassVar[dict[str, tuple[Any, ...]]] = {"encoder_hid_dim": (None,), "encoder_hid_dim_type": (None,)}
    ignored: ClassVar[frozenset[str]] = frozenset({"addition_embed_type_num_heads", "upcast_attention"})

    in_channels: int = 4
    conditioning_channels: int = 3
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    down_block_types: tuple[str, ...] = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
    mid_block_type: str | None = "UNetMidBlock2DCrossAttn"
    only_cross_attention: bool | tuple[bool, ...] = False
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0
    act_fn: str = "silu"
    norm_num_groups: int | None = 32
    norm_eps: float = 1e-5
    cross_attention_dim: int = 1280
    transformer_layers_per_block: int | tuple[Any, ...] = 1
    attention_head_dim: int | tuple[int, ...] = 8
    num_attention_heads: int | tuple[int, ...] | None = None
    use_linear_projection: bool = False
    class_embed_type: str | None = None
    addition_embed_type: str | None = None
    addition_time_embed_dim: int | None = None
    num_class_embeds: int | None = None
    resnet_time_scale_shift: str = "default"
    projection_class_embeddings_input_dim: int | None = None
    controlnet_conditioning_channel_order: str = "rgb"
    conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256)
    global_pool_conditions: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.controlnet_conditioning_channel_order not in ("rgb", "bgr"):
            raise self.unsupported("controlnet_conditioning_channel_order", self.controlnet_conditioning_channel_order, "'rgb' or 'bgr'")
        if not self.conditioning_embedding_out_channels:
            raise self.unsupported("conditioning_embedding_out_channels", self.conditioning_embedding_out_channels, "a list of channels")
        self.unet_view()  # the encoder half's keys are validated by the UNet's config

    def unet_view(self) -> UNet2DConditionConfig:
        """The UNet config whose encoder half this ControlNet copies (the up path mirrors it)."""
        unet_keys = {f.name for f in fields(UNet2DConditionConfig)}
        shared = {f.name: getattr(self, f.name) for f in fields(self) if f.name in unet_keys}
        up = tuple(_UP_FOR_DOWN.get(name, name) for name in reversed(self.down_block_types))
        try:
            return UNet2DConditionConfig(**shared, up_block_types=up)
        except ValueError as err:
            raise ValueError(str(err).replace("UNet2DConditionModel", "ControlNetModel")) from None

    @classmethod
    def from_unet(cls, unet: UNet2DConditionConfig, **overrides: Any) -> ControlNetConfig:
        """The config of a ControlNet copying ``unet``'s encoder (diffusers' ``from_unet``)."""
        keys = {f.name for f in fields(cls)}
        values = {f.name: getattr(unet, f.name) for f in fields(unet) if f.name in keys}
        if isinstance(values["layers_per_block"], tuple):
            raise ValueError("ControlNetModel.from_unet: per-block layers_per_block is not supported by ControlNet")
        return cls(**{**values, **overrides})


@dataclass
class ControlNetOutput(ModelOutput):
    """Residuals for each UNet skip (``down_block_res_samples``) and for the middle block."""

    down_block_res_samples: tuple[torch.Tensor, ...]
    mid_block_res_sample: torch.Tensor


class ControlNetConditioningEmbedding(nn.Module):
    """The control image (B, 3, H, W) -> features at the latent resolution, conv + SiLU stages."""

    def __init__(self, embedding_channels: int, conditioning_channels: int, block_out_channels: tuple[int, ...]) -> None:
        super().__init__()
        self.conv_in = Conv2d(conditioning_channels, block_out_channels[0], 3, padding=1)
        blocks: list[nn.Module] = []
        for c_in, c_out in zip(block_out_channels[:-1], block_out_channels[1:]):
            blocks += [Conv2d(c_in, c_in, 3, padding=1), Conv2d(c_in, c_out, 3, padding=1, stride=2)]
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = Conv2d(block_out_channels[-1], embedding_channels, 3, padding=1)

    def forward(self, conditioning: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.conv_in(conditioning))
        for block in self.blocks:
            h = F.silu(block(h))
        return self.conv_out(h)


def _zero_conv(channels: int) -> nn.Conv2d:
    conv = Conv2d(channels, channels, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class ControlNetModel(ConditionEmbedding, Model):
    """``forward(sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale=1.0, ...)``
    -> residuals for ``UNet2DConditionModel(down_block_additional_residuals=...,
    mid_block_additional_residual=...)``."""

    config_class = ControlNetConfig
    config: ControlNetConfig

    def __init__(self, config: ControlNetConfig | dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        cfg, unet = self.config, self.config.unet_view()
        channels = cfg.block_out_channels
        self.conv_in = Conv2d(cfg.in_channels, channels[0], 3, padding=1)
        self._build_embeddings(unet)
        self.controlnet_cond_embedding = ControlNetConditioningEmbedding(
            channels[0], cfg.conditioning_channels, cfg.conditioning_embedding_out_channels
        )
        nn.init.zeros_(self.controlnet_cond_embedding.conv_out.weight)
        nn.init.zeros_(self.controlnet_cond_embedding.conv_out.bias)
        self.down_blocks = build_down_blocks(unet)
        # One zero conv per UNet skip: conv_in's output, each resnet's, each downsampler's.
        skip_channels = [channels[0]]
        for i, c in enumerate(channels):
            skip_channels += [c] * cfg.layers_per_block + ([c] if i < len(channels) - 1 else [])
        self.controlnet_down_blocks = nn.ModuleList(_zero_conv(c) for c in skip_channels)
        self.controlnet_mid_block = _zero_conv(channels[-1])
        self.mid_block = build_mid_block(unet)

    @classmethod
    def from_unet(
        cls,
        unet: UNet2DConditionModel,
        controlnet_conditioning_channel_order: str = "rgb",
        conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256),
        load_weights_from_unet: bool = True,
        conditioning_channels: int = 3,
    ) -> ControlNetModel:
        """A ControlNet initialised from a UNet's encoder (zero convs at zero), as in diffusers."""
        config = ControlNetConfig.from_unet(
            unet.config,
            controlnet_conditioning_channel_order=controlnet_conditioning_channel_order,
            conditioning_embedding_out_channels=tuple(conditioning_embedding_out_channels),
            conditioning_channels=conditioning_channels,
        )
        controlnet = cls(config).to(device=unet.device, dtype=unet.dtype)
        if load_weights_from_unet:
            shared = {k: v for k, v in unet.state_dict().items() if k.split(".")[0] in _ENCODER_PARTS}
            missing = {k for k in controlnet.state_dict() if k.split(".")[0] in _ENCODER_PARTS} - set(shared)
            if missing:
                raise ValueError(f"ControlNetModel.from_unet: the UNet lacks {sorted(missing)[:5]}")
            controlnet.load_state_dict(shared, strict=False)
        return controlnet

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        controlnet_cond: torch.Tensor,
        conditioning_scale: float = 1.0,
        class_labels: torch.Tensor | None = None,
        timestep_cond: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        guess_mode: bool = False,
        return_dict: bool = True,
    ) -> ControlNetOutput | tuple[Any, ...]:
        """Residuals for latents ``sample`` (B, C, h, w) under the control image (B, 3, H, W)."""
        if cross_attention_kwargs:
            raise NotImplementedError(f"ControlNetModel: cross_attention_kwargs {sorted(cross_attention_kwargs)} are not supported")
        if self.config.controlnet_conditioning_channel_order == "bgr":
            controlnet_cond = torch.flip(controlnet_cond, dims=[1])

        # 1. Conditioning vector, then the control image joins the latents after conv_in.
        emb = self.embed_conditions(sample, timestep, timestep_cond, class_labels, added_cond_kwargs)
        ctx = CrossAttnInputs(encoder_hidden_states, additive_mask(attention_mask, sample.dtype), None)
        h = self.conv_in(sample) + self.controlnet_cond_embedding(controlnet_cond)

        # 2. The UNet's down and mid path, keeping every skip.
        skips = [h]
        for block in self.down_blocks:
            h, states = block(h, emb, ctx, None)
            skips.extend(states)
        if self.mid_block is not None:
            h = self.mid_block(h, emb, ctx)

        # 3. Zero convs, then the scale: guess mode ramps it from 0.1 (shallow) to 1 (middle).
        down = [conv(s) for conv, s in zip(self.controlnet_down_blocks, skips, strict=True)]
        mid = self.controlnet_mid_block(h)
        if guess_mode and not self.config.global_pool_conditions:
            scales = torch.logspace(-1, 0, len(down) + 1, device=h.device) * conditioning_scale
            down = [d * s for d, s in zip(down, scales)]
            mid = mid * scales[-1]
        else:
            down = [d * conditioning_scale for d in down]
            mid = mid * conditioning_scale
        if self.config.global_pool_conditions:
            down = [d.mean(dim=(2, 3), keepdim=True) for d in down]
            mid = mid.mean(dim=(2, 3), keepdim=True)
        if not return_dict:
            return (tuple(down), mid)
        return ControlNetOutput(down_block_res_samples=tuple(down), mid_block_res_sample=mid)


# Top-level modules ControlNet shares with the UNet (``from_unet`` copies their weights).
_ENCODER_PARTS = frozenset({"conv_in", "time_proj", "time_embedding", "class_embedding", "add_time_proj",
                            "add_embedding", "down_blocks", "mid_block"})
