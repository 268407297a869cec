"""The text-conditioned UNet of Stable Diffusion 1.x / 2.x and SDXL (diffusers' ``UNet2DConditionModel``).

Reads diffusers' ``config.json`` and weights unchanged. Reading order: config, the model's
construction, then the forward pass in phases (conditioning embedding, down, mid, up, out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from diffblocks.models.attention import BasicTransformerBlock, additive_mask
from diffblocks.models.embeddings import TimestepEmbedding, Timesteps, activation
from diffblocks.models.kernels import Conv2d
from diffblocks.models.modeling import Model, ModelConfig, ModelOutput
from diffblocks.models.resnet import ResnetBlock2D
from diffblocks.models.unet_blocks import AttnArgs, CrossAttnInputs, DownBlock, MidBlock, ResnetArgs, UpBlock

DOWN_BLOCKS = {"DownBlock2D": False, "CrossAttnDownBlock2D": True}  # name -> has cross-attention
UP_BLOCKS = {"UpBlock2D": False, "CrossAttnUpBlock2D": True}
MID_BLOCKS = ("UNetMidBlock2DCrossAttn", None)
CLASS_EMBED_TYPES = (None, "timestep", "projection", "identity")
ADDITION_EMBED_TYPES = (None, "text_time")

IntOrTuple = int | tuple[int, ...]


@dataclass(frozen=True)
class UNet2DConditionConfig(ModelConfig):
    """diffusers' UNet2DConditionModel config keys (same names, same defaults, same meanings).

    Quirk kept for compatibility: in SD configs ``attention_head_dim`` is the number of heads per
    block (``num_attention_heads`` is normally null); see `heads`.
    """

    class_name: ClassVar[str] = "UNet2DConditionModel"
    # Keys of branches we do not build: only the listed value (diffusers' default) is accepted.
    fixed: ClassVar[dict[str, tuple[Any, ...]]] = {
        "dual_cross_attention": (False,),
        "encoder_hid_dim": (None,),
        "encoder_hid_dim_type": (None,),
        "resnet_skip_time_act": (False,),
        "time_embedding_type": ("positional",),
        "time_embedding_act_fn": (None,),
        "timestep_post_act": (None,),
        "attention_type": ("default",),
        "class_embeddings_concat": (False,),
        "cross_attention_norm": (None,),
    }
    # Used by diffusers only for block or embedding types we reject anyway.
    ignored: ClassVar[frozenset[str]] = frozenset({"resnet_out_scale_factor", "addition_embed_type_num_heads"})
    bounds: ClassVar[dict[str, tuple[str | None, int]]] = {
        "in_channels": ("model_channels", 1), "out_channels": ("model_channels", 1),
        "down_block_types": (None, 1), "up_block_types": (None, 1),
        "block_out_channels": ("model_channels", 1), "layers_per_block": ("model_layers", 1),
        "norm_num_groups": ("model_channels", 1), "cross_attention_dim": ("model_channels", 1),
        "transformer_layers_per_block": ("model_layers", 1), "reverse_transformer_layers_per_block": ("model_layers", 1),
        "attention_head_dim": ("model_heads", 1), "num_attention_heads": ("model_heads", 1),
        "addition_time_embed_dim": ("model_channels", 1), "num_class_embeds": ("vocab_size", 1),
        "time_embedding_dim": ("model_channels", 1), "time_cond_proj_dim": ("model_channels", 1),
        "projection_class_embeddings_input_dim": ("model_channels", 1),
        "sample_size": ("image_side", 1),
        "conv_in_kernel": (None, 1), "conv_out_kernel": (None, 1),
    }

    sample_size: int | tuple[int, int] | None = None
    in_channels: int = 4
    out_channels: int = 4
    center_input_sample: bool = False
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    down_block_types: tuple[str, ...] = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
    mid_block_type: str | None = "UNetMidBlock2DCrossAttn"
    up_block_types: tuple[str, ...] = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")
    only_cross_attention: bool | tuple[bool, ...] = False
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: IntOrTuple = 2
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0
    dropout: float = 0.0
    act_fn: str = "silu"
    norm_num_groups: int | None = 32
    norm_eps: float = 1e-5
    cross_attention_dim: IntOrTuple = 1280
    transformer_layers_per_block: int | tuple[Any, ...] = 1
    reverse_transformer_layers_per_block: tuple[Any, ...] | None = None
    attention_head_dim: IntOrTuple = 8
    num_attention_heads: IntOrTuple | None = None
    use_linear_projection: bool = False
    class_embed_type: str | None = None
    addition_embed_type: str | None = None
    addition_time_embed_dim: int | None = None
    num_class_embeds: int | None = None
    upcast_attention: bool = False  # SDPA already accumulates in fp32; accepted, nothing to do
    time_embedding_dim: int | None = None
    time_cond_proj_dim: int | None = None
    conv_in_kernel: int = 3
    conv_out_kernel: int = 3
    projection_class_embeddings_input_dim: int | None = None
    mid_block_only_cross_attention: bool | None = None
    resnet_time_scale_shift: str = "default"  # or "scale_shift": see ResnetBlock2D

    def __post_init__(self) -> None:
        super().__post_init__()
        n = len(self.down_block_types)
        for key, names in (("down_block_types", DOWN_BLOCKS), ("up_block_types", UP_BLOCKS)):
            for name in getattr(self, key):
                if name not in names:
                    raise self.unsupported(key, name, list(names))
        checks = [
            ("mid_block_type", self.mid_block_type, MID_BLOCKS),
            ("class_embed_type", self.class_embed_type, CLASS_EMBED_TYPES),
            ("addition_embed_type", self.addition_embed_type, ADDITION_EMBED_TYPES),
            ("resnet_time_scale_shift", self.resnet_time_scale_shift, ("default", "scale_shift")),
        ]
        for key, value, allowed in checks:
            if value not in allowed:
                raise self.unsupported(key, value, list(allowed))
        if self.norm_num_groups is None:
            raise self.unsupported("norm_num_groups", None, "an int")
        self.check_divides("norm_num_groups", "block_out_channels")
        for key in ("up_block_types", "block_out_channels", "layers_per_block", "attention_head_dim",
                    "num_attention_heads", "cross_attention_dim", "only_cross_attention", "transformer_layers_per_block"):
            value = getattr(self, key)
            if isinstance(value, tuple) and len(value) != n:
                raise self.invalid(key, value, f"needs {n} entries, one per down block")
        if self.addition_embed_type == "text_time" and not (
            self.addition_time_embed_dim and self.projection_class_embeddings_input_dim
        ):
            raise self.invalid("addition_embed_type", "text_time", "needs addition_time_embed_dim and projection_class_embeddings_input_dim")
        if self.class_embed_type == "projection" and not self.projection_class_embeddings_input_dim:
            raise self.invalid("class_embed_type", "projection", "needs projection_class_embeddings_input_dim")

    def per_block(self, key: str) -> tuple[Any, ...]:
        """A per-block value of ``key`` (an int/bool in the config means the same for every block)."""
        value = getattr(self, key)
        return value if isinstance(value, tuple) else (value,) * len(self.down_block_types)

    @property
    def heads(self) -> tuple[int, ...]:
        """Attention heads per block. SD configs name the head count ``attention_head_dim``."""
        if self.num_attention_heads is not None:
            return self.per_block("num_attention_heads")
        return self.per_block("attention_head_dim")


@dataclass
class UNet2DConditionOutput(ModelOutput):
    """The predicted noise (or v / x0, per the scheduler's prediction type)."""

    sample: torch.Tensor


def _depths(value: int | tuple[int, ...], num_layers: int) -> tuple[int, ...]:
    """Transformer depth per resnet of a block (an int means the same for all of them)."""
    return (value,) * num_layers if isinstance(value, int) else tuple(value[:num_layers])


def _attn_args(cfg: UNet2DConditionConfig, i: int, has_attention: bool, depth: Any, num_layers: int, only: bool) -> AttnArgs | None:
    if not has_attention:
        return None
    return AttnArgs(cfg.heads[i], cfg.per_block("cross_attention_dim")[i], _depths(depth, num_layers),
                    cfg.use_linear_projection, only, cfg.norm_num_groups, cfg.dropout)


def _resnet_args(cfg: UNet2DConditionConfig) -> ResnetArgs:
    temb = cfg.time_embedding_dim or cfg.block_out_channels[0] * 4
    return ResnetArgs(temb, cfg.norm_num_groups, cfg.norm_eps, cfg.act_fn, cfg.dropout, cfg.resnet_time_scale_shift)


def build_down_blocks(cfg: UNet2DConditionConfig) -> nn.ModuleList:
    """The encoder half's down blocks (shared by the UNet and ControlNet)."""
    channels, res = cfg.block_out_channels, _resnet_args(cfg)
    layers, depths = cfg.per_block("layers_per_block"), cfg.per_block("transformer_layers_per_block")
    only_cross, last = cfg.per_block("only_cross_attention"), len(channels) - 1
    return nn.ModuleList(
        DownBlock(channels[max(i - 1, 0)], channels[i], layers[i], res,
                  _attn_args(cfg, i, DOWN_BLOCKS[name], depths[i], layers[i], only_cross[i]),
                  add_downsample=i < last, downsample_padding=cfg.downsample_padding)
        for i, name in enumerate(cfg.down_block_types)
    )


def build_mid_block(cfg: UNet2DConditionConfig) -> MidBlock | None:
    """The cross-attention middle block, or None (``mid_block_type: null``)."""
    if cfg.mid_block_type is None:
        return None
    only = cfg.mid_block_only_cross_attention
    if only is None:
        only = cfg.only_cross_attention if isinstance(cfg.only_cross_attention, bool) else False
    last = len(cfg.block_out_channels) - 1
    depth = cfg.per_block("transformer_layers_per_block")[-1]
    attn = _attn_args(cfg, last, True, depth, 1, only)
    return MidBlock(cfg.block_out_channels[-1], _resnet_args(cfg), attn, cfg.mid_block_scale_factor)


class ConditionEmbedding(nn.Module):
    """The timestep MLP plus class labels (SD 2 upscaler / unCLIP) or SDXL's size-and-text
    embedding: the (B, time_embed_dim) vector every resnet is conditioned on. The UNet and
    ControlNet share it, so their attribute names (``time_proj``, ``add_embedding``...) are
    set on the model itself, as in diffusers' state dicts."""

    config: Any

    def _build_embeddings(self, cfg: UNet2DConditionConfig) -> None:
        base = cfg.block_out_channels[0]
        temb = cfg.time_embedding_dim or base * 4
        self.time_proj = Timesteps(base, cfg.flip_sin_to_cos, cfg.freq_shift)
        self.time_embedding = TimestepEmbedding(base, temb, act_fn=cfg.act_fn, cond_proj_dim=cfg.time_cond_proj_dim)

        self.class_embedding: nn.Module | None = None
        if cfg.class_embed_type is None and cfg.num_class_embeds is not None:
            self.class_embedding = nn.Embedding(cfg.num_class_embeds, temb)
        elif cfg.class_embed_type == "timestep":
            self.class_embedding = TimestepEmbedding(base, temb, act_fn=cfg.act_fn)
        elif cfg.class_embed_type == "projection":
            self.class_embedding = TimestepEmbedding(cfg.projection_class_embeddings_input_dim, temb)
        elif cfg.class_embed_type == "identity":
            self.class_embedding = nn.Identity()

        if cfg.addition_embed_type == "text_time":
            self.add_time_proj = Timesteps(cfg.addition_time_embed_dim, cfg.flip_sin_to_cos, cfg.freq_shift)
            self.add_embedding = TimestepEmbedding(cfg.projection_class_embeddings_input_dim, temb)

    def embed_conditions(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        timestep_cond: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The (B, time_embed_dim) vector every resnet is conditioned on."""
        if not torch.is_tensor(timestep):
            dtype = torch.float64 if isinstance(timestep, float) else torch.int64
            if sample.device.type == "mps":  # no 64-bit on mps
                dtype = torch.float32 if isinstance(timestep, float) else torch.int32
            timestep = torch.tensor([timestep], dtype=dtype, device=sample.device)
        elif timestep.ndim == 0:
            timestep = timestep[None].to(sample.device)
        t_emb = self.time_proj(timestep.expand(sample.shape[0])).to(sample.dtype)
        emb = self.time_embedding(t_emb, timestep_cond)

        if self.class_embedding is not None:
            if class_labels is None:
                raise ValueError(f"{type(self).__name__}: this model has a class embedding; pass class_labels")
            if self.config.class_embed_type == "timestep":
                class_labels = self.time_proj(class_labels).to(sample.dtype)
            emb = emb + self.class_embedding(class_labels).to(sample.dtype)

        if self.config.addition_embed_type == "text_time":
            kwargs = added_cond_kwargs or {}
            missing = [k for k in ("text_embeds", "time_ids") if k not in kwargs]
            if missing:
                raise ValueError(f"{type(self).__name__} (SDXL): added_cond_kwargs is missing {missing}")
            text_embeds = kwargs["text_embeds"]
            # time_ids (B, 6): original size, crop offset, target size -> sinusoidal features each.
            time_embeds = self.add_time_proj(kwargs["time_ids"].flatten()).reshape(text_embeds.shape[0], -1)
            emb = emb + self.add_embedding(torch.cat([text_embeds, time_embeds], dim=-1).to(emb.dtype))
        return emb


@dataclass
class UNetConditioning:
    """What every block of one UNet call shares: the conditioning vector (B, time_embed_dim),
    the cross-attention inputs, and whether the sample's size needs exact-size upsampling."""

    emb: torch.Tensor
    ctx: CrossAttnInputs
    odd: bool


class UNet2DConditionModel(ConditionEmbedding, Model):
    """Stable Diffusion's denoiser: ``forward(sample, timestep, encoder_hidden_states, ...)``."""

    config_class = UNet2DConditionConfig
    config: UNet2DConditionConfig
    #: What regional compilation compiles (``diffblocks.models.compiling``).
    repeated_blocks: ClassVar[tuple[type[nn.Module], ...]] = (ResnetBlock2D, BasicTransformerBlock)

    def __init__(self, config: UNet2DConditionConfig | dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        cfg = self.config
        channels = cfg.block_out_channels
        self.conv_in = Conv2d(cfg.in_channels, channels[0], cfg.conv_in_kernel, padding=(cfg.conv_in_kernel - 1) // 2)
        self._build_embeddings(cfg)
        self.down_blocks = build_down_blocks(cfg)
        self.up_blocks = nn.ModuleList()  # registered before mid_block: diffusers' state-dict order
        self.mid_block = build_mid_block(cfg)

        # The up path walks the per-block settings reversed.
        res, layers, only_cross = _resnet_args(cfg), cfg.per_block("layers_per_block"), cfg.per_block("only_cross_attention")
        up_depths = cfg.reverse_transformer_layers_per_block or tuple(reversed(cfg.per_block("transformer_layers_per_block")))
        last = len(channels) - 1
        for i, name in enumerate(cfg.up_block_types):
            j = last - i  # the matching down-block index
            self.up_blocks.append(
                UpBlock(channels[max(j - 1, 0)], channels[min(j + 1, last)], channels[j], layers[j] + 1, res,
                        _attn_args(cfg, j, UP_BLOCKS[name], up_depths[i], layers[j] + 1, only_cross[j]),
                        add_upsample=i < last)
            )

        self.conv_norm_out = nn.GroupNorm(cfg.norm_num_groups, channels[0], eps=cfg.norm_eps)
        self.conv_act = activation(cfg.act_fn)
        self.conv_out = Conv2d(channels[0], cfg.out_channels, cfg.conv_out_kernel, padding=(cfg.conv_out_kernel - 1) // 2)

    @property
    def num_upsamplers(self) -> int:
        return len(self.up_blocks) - 1


    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        timestep_cond: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
        down_block_additional_residuals: tuple[torch.Tensor, ...] | None = None,
        mid_block_additional_residual: torch.Tensor | None = None,
        down_intrablock_additional_residuals: tuple[torch.Tensor, ...] | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> UNet2DConditionOutput | tuple[torch.Tensor]:
        """Predict the noise for ``sample`` (B, C, H, W) at ``timestep`` given text states (B, L, D).

        ``timestep`` is a number, a 0-d tensor or one per batch element. SDXL needs
        ``added_cond_kwargs={"text_embeds": pooled, "time_ids": (B, 6)}``. ControlNet residuals
        (``down_block_additional_residuals`` + ``mid_block_additional_residual``, both) and
        T2I-Adapter ones (``down_intrablock_additional_residuals``) are added as in diffusers.
        Masks are 1/0 keep-masks of shape (B, L) or additive biases.
        """
        if cross_attention_kwargs:
            raise NotImplementedError(
                f"UNet2DConditionModel: cross_attention_kwargs {sorted(cross_attention_kwargs)} are not supported"
            )
        if (down_block_additional_residuals is None) != (mid_block_additional_residual is None):
            # diffusers silently reads down-only residuals as a (deprecated) T2I-Adapter input and
            # ignores a mid-only one; say so instead of guessing.
            raise ValueError(
                "UNet2DConditionModel: ControlNet residuals need both down_block_additional_residuals and "
                "mid_block_additional_residual; T2I-Adapter features go in down_intrablock_additional_residuals"
            )
        sample, cond = self.prepare(sample, timestep, encoder_hidden_states, class_labels, timestep_cond,
                                    attention_mask, added_cond_kwargs, encoder_attention_mask)
        adapter = list(down_intrablock_additional_residuals or ())
        h = self.conv_in(sample)
        skips = [h]
        h = self.down(h, skips, cond, adapter=adapter)
        if down_block_additional_residuals is not None:
            skips = [s + r for s, r in zip(skips, down_block_additional_residuals, strict=True)]
        h = self.middle(h, cond, adapter)
        if mid_block_additional_residual is not None:
            h = h + mid_block_additional_residual
        h = self.out(self.up(h, skips, cond))
        return UNet2DConditionOutput(sample=h) if return_dict else (h,)

    # The forward pass in phases (prepare -> down -> middle -> up -> out), public so a step cache
    # can recompute the shallow path and reuse the deep one (diffblocks.presets.stages.caching).

    def prepare(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        timestep_cond: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, UNetConditioning]:
        """Phase 1: the conditioning vector from timestep, class labels and SDXL's extra inputs,
        the cross-attention inputs, and the (centred, if configured) sample."""
        emb = self.embed_conditions(sample, timestep, timestep_cond, class_labels, added_cond_kwargs)
        ctx = CrossAttnInputs(
            encoder_hidden_states,
            additive_mask(attention_mask, sample.dtype),
            additive_mask(encoder_attention_mask, sample.dtype),
        )
        if self.config.center_input_sample:
            sample = 2 * sample - 1.0
        odd = any(s % 2**self.num_upsamplers for s in sample.shape[-2:])
        return sample, UNetConditioning(emb, ctx, odd)

    def down(self, h: torch.Tensor, skips: list[torch.Tensor], cond: UNetConditioning, start: int = 0,
             stop: int | None = None, adapter: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Phase 2: down blocks ``start:stop`` from ``h`` (``conv_in(sample)`` for the first),
        appending every intermediate state to ``skips``. T2I-Adapter features are popped from ``adapter``."""
        for block in self.down_blocks[start:stop]:
            h, states = block(h, cond.emb, cond.ctx, adapter.pop(0) if adapter else None)
            skips.extend(states)
        return h

    def middle(self, h: torch.Tensor, cond: UNetConditioning, adapter: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Phase 3: the middle block (a leftover adapter feature of matching shape is added after it)."""
        if self.mid_block is not None:
            h = self.mid_block(h, cond.emb, cond.ctx)
            if adapter and adapter[0].shape == h.shape:
                h = h + adapter.pop(0)
        return h

    def up(self, h: torch.Tensor, skips: list[torch.Tensor], cond: UNetConditioning, start: int = 0,
           stop: int | None = None) -> torch.Tensor:
        """Phase 4: up blocks ``start:stop``, each taking its skips from the end of ``skips`` (a
        copy is consumed). Odd sizes: upsample to the skip's size rather than exactly 2x."""
        skips = list(skips)
        n_up = len(self.up_blocks)
        for i in range(start, n_up if stop is None else stop):
            block = self.up_blocks[i]
            block_skips = skips[-len(block.resnets):]
            del skips[-len(block.resnets):]
            size = tuple(skips[-1].shape[2:]) if cond.odd and i < n_up - 1 else None
            h = block(h, block_skips, cond.emb, cond.ctx, size)
        return h

    def out(self, h: torch.Tensor) -> torch.Tensor:
        """Phase 5: normalise, activate, project to the output channels."""
        return self.conv_out(self.conv_act(self.conv_norm_out(h)))
