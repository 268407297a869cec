"""FluxTransformer2DModel: the Flux.1 rectified-flow transformer (dev and schnell).

Weight names and config keys are diffusers' (``transformer/config.json`` of a Flux repo loads
as is); the layers live in :mod:`diffblocks.models.flux_layers`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from diffblocks.models.flux_layers import (AdaLayerNormContinuous, FluxSingleTransformerBlock, FluxTransformerBlock,
                          Rope, TimeTextEmbedding, rope_tables)
from diffblocks.models.kernels import Linear
from diffblocks.models.modeling import Model, ModelConfig, ModelOutput


@dataclass(frozen=True)
class FluxTransformer2DConfig(ModelConfig):
    """diffusers' ``FluxTransformer2DModel`` config.json, key for key (defaults are Flux.1's)."""

    class_name: ClassVar[str] = "FluxTransformer2DModel"
    bounds: ClassVar[dict[str, tuple[str | None, int]]] = {
        "patch_size": (None, 1), "in_channels": ("model_channels", 1), "out_channels": ("model_channels", 1),
        "num_layers": ("model_layers", 0), "num_single_layers": ("model_layers", 0),
        "attention_head_dim": ("model_heads", 1), "num_attention_heads": ("model_heads", 1),
        "joint_attention_dim": ("model_channels", 1), "pooled_projection_dim": ("model_channels", 1),
        "axes_dims_rope": ("model_heads", 0),
    }

    patch_size: int = 1
    in_channels: int = 64
    out_channels: int | None = None  # None: same as in_channels
    num_layers: int = 19
    num_single_layers: int = 38
    attention_head_dim: int = 128
    num_attention_heads: int = 24
    joint_attention_dim: int = 4096
    pooled_projection_dim: int = 768
    guidance_embeds: bool = False  # True for guidance-distilled models (dev), False for schnell
    axes_dims_rope: tuple[int, ...] = (16, 56, 56)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "axes_dims_rope", tuple(self.axes_dims_rope))
        # RoPE rotates whole heads, one axis per slice of the head: the slices must tile it exactly.
        if sum(self.axes_dims_rope) != self.attention_head_dim or any(d % 2 for d in self.axes_dims_rope):
            raise self.unsupported("axes_dims_rope", list(self.axes_dims_rope),
                                   f"even sizes summing to attention_head_dim={self.attention_head_dim}")


@dataclass
class FluxTokens:
    """The residual streams between the transformer's phases: image tokens ``x`` [B, S_img, D],
    text tokens ``context`` [B, S_txt, D], the conditioning vector and the RoPE tables."""

    x: torch.Tensor
    context: torch.Tensor
    temb: torch.Tensor
    rope: Rope


@dataclass
class Transformer2DModelOutput(ModelOutput):
    """Output of a transformer denoiser, as in diffusers: the prediction is ``.sample``."""

    sample: torch.Tensor


def _positions(ids: torch.Tensor, name: str) -> torch.Tensor:
    # diffusers once took ids with a batch axis [B, S, 3]; positions are the same for every sample.
    if ids.ndim == 3:
        ids = ids[0]
    if ids.ndim != 2:
        raise ValueError(f"{name} must have shape [seq_len, n_axes], got {tuple(ids.shape)}")
    return ids


class FluxTransformer2DModel(Model):
    """The Flux.1 transformer: 19 double-stream blocks, then 38 single-stream blocks (by default).

    Inputs are packed latents ``[B, S_img, in_channels]`` and T5 tokens ``[B, S_txt,
    joint_attention_dim]``; ``img_ids``/``txt_ids`` give each token's 3-axis RoPE position.
    """

    config_class = FluxTransformer2DConfig
    config: FluxTransformer2DConfig
    #: What regional compilation compiles (``diffblocks.models.compiling``).
    repeated_blocks: ClassVar[tuple[type[nn.Module], ...]] = (FluxTransformerBlock, FluxSingleTransformerBlock)

    def __init__(self, config: FluxTransformer2DConfig | dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        c = self.config
        dim = c.num_attention_heads * c.attention_head_dim
        out_channels = c.out_channels or c.in_channels
        self.time_text_embed = TimeTextEmbedding(dim, c.pooled_projection_dim, c.guidance_embeds)
        self.context_embedder = Linear(c.joint_attention_dim, dim)
        self.x_embedder = Linear(c.in_channels, dim)
        self.transformer_blocks = nn.ModuleList(
            FluxTransformerBlock(dim, c.num_attention_heads, c.attention_head_dim)
            for _ in range(c.num_layers))
        self.single_transformer_blocks = nn.ModuleList(
            FluxSingleTransformerBlock(dim, c.num_attention_heads, c.attention_head_dim)
            for _ in range(c.num_single_layers))
        self.norm_out = AdaLayerNormContinuous(dim, dim)
        self.proj_out = Linear(dim, c.patch_size * c.patch_size * out_channels)
        self._rope_cache: tuple[torch.Tensor, Rope] | None = None

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        pooled_projections: torch.Tensor | None = None,
        timestep: torch.Tensor | float | None = None,
        img_ids: torch.Tensor | None = None,
        txt_ids: torch.Tensor | None = None,
        guidance: torch.Tensor | float | None = None,
        joint_attention_kwargs: dict[str, Any] | None = None,
        controlnet_block_samples: Sequence[torch.Tensor] | None = None,
        controlnet_single_block_samples: Sequence[torch.Tensor] | None = None,
        return_dict: bool = True,
        controlnet_blocks_repeat: bool = False,
    ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        """Predict the flow for packed latents at ``timestep`` (a sigma in [0, 1], as the pipeline
        passes it; the model scales timestep and guidance by 1000 itself, like diffusers').

        ``controlnet_*`` are a ControlNet's residuals for the image tokens after each double /
        single block, spread over the blocks as diffusers does (``controlnet_blocks_repeat``
        cycles them instead, as XLabs ControlNets expect).
        """
        self._check_call(encoder_hidden_states, pooled_projections, timestep, img_ids, txt_ids,
                         guidance, joint_attention_kwargs)
        tokens = self.embed(hidden_states, encoder_hidden_states, pooled_projections, timestep, img_ids, txt_ids,
                            guidance)
        tokens = self.run_blocks(tokens, 0, None, controlnet_block_samples, controlnet_single_block_samples,
                                 controlnet_blocks_repeat)
        out = self.project_out(tokens)
        return Transformer2DModelOutput(sample=out) if return_dict else (out,)

    # The forward pass in phases (``embed`` -> ``run_blocks`` -> ``project_out``), public so a step
    # cache can run the first block alone and reuse the rest (diffblocks.presets.stages.caching).

    @property
    def num_blocks(self) -> int:
        """Double-stream plus single-stream blocks: the index range ``run_blocks`` walks."""
        return len(self.transformer_blocks) + len(self.single_transformer_blocks)

    def embed(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
              pooled_projections: torch.Tensor, timestep: torch.Tensor | float, img_ids: torch.Tensor,
              txt_ids: torch.Tensor, guidance: torch.Tensor | float | None = None) -> FluxTokens:
        """Phase 1: the conditioning vector, image and text tokens, and the RoPE tables."""
        dtype, batch = hidden_states.dtype, hidden_states.shape[0]
        timestep = _per_sample(timestep, batch, hidden_states).to(dtype) * 1000
        if guidance is not None:
            guidance = _per_sample(guidance, batch, hidden_states).to(dtype) * 1000
        temb = self.time_text_embed(timestep, pooled_projections, guidance)
        x = self.x_embedder(hidden_states)
        context = self.context_embedder(encoder_hidden_states)
        ids = torch.cat([_positions(txt_ids, "txt_ids"), _positions(img_ids, "img_ids")]).to(x.device)
        return FluxTokens(x, context, temb, self._rope(ids))

    def _rope(self, ids: torch.Tensor) -> Rope:
        # Every step of a denoise loop passes the same positions: the tables are computed once
        # (in float64: ~0.2 ms a step at the bench sizes, ~9 ms for 1024 px on a CPU).
        cached = self._rope_cache
        if cached is not None and cached[0].shape == ids.shape and cached[0].device == ids.device \
                and cached[0].dtype == ids.dtype and torch.equal(cached[0], ids):
            return cached[1]
        rope = rope_tables(ids, self.config.axes_dims_rope)
        if not torch.compiler.is_compiling():
            self._rope_cache = (ids.clone(), rope)
        return rope

    def run_blocks(self, tokens: FluxTokens, start: int = 0, stop: int | None = None,
                   controlnet_block_samples: Sequence[torch.Tensor] | None = None,
                   controlnet_single_block_samples: Sequence[torch.Tensor] | None = None,
                   controlnet_blocks_repeat: bool = False) -> FluxTokens:
        """Phase 2: blocks ``start:stop`` of the double-stream blocks followed by the single-stream
        ones (index ``num_layers`` is the first single block)."""
        doubles, singles = self.transformer_blocks, self.single_transformer_blocks
        stop = self.num_blocks if stop is None else stop
        x, context, temb, rope = tokens.x, tokens.context, tokens.temb, tokens.rope
        for i in range(start, min(stop, len(doubles))):
            context, x = doubles[i](x, context, temb, rope)
            if controlnet_block_samples is not None:
                x = x + _control(controlnet_block_samples, i, len(doubles), controlnet_blocks_repeat)
        first, last = max(start - len(doubles), 0), stop - len(doubles)
        if first < last:  # text tokens come first in the joined sequence
            text_len = context.shape[1]
            joint = torch.cat([context, x], dim=1)
            for i in range(first, last):
                joint = singles[i](joint, temb, rope)
                if controlnet_single_block_samples is not None:  # residuals are for image tokens only
                    residual = _control(controlnet_single_block_samples, i, len(singles))
                    joint = torch.cat([joint[:, :text_len], joint[:, text_len:] + residual], dim=1)
            context, x = joint[:, :text_len], joint[:, text_len:]
        return FluxTokens(x, context, temb, rope)

    def project_out(self, tokens: FluxTokens) -> torch.Tensor:
        """Phase 3: the image tokens' final modulation and projection (the predicted flow)."""
        return self.proj_out(self.norm_out(tokens.x, tokens.temb))

    def cache_context(self, name: str) -> contextlib.AbstractContextManager[None]:
        """No-op stand-in for diffusers' step-cache hook, so diffusers' Flux pipelines can drive
        this model unchanged (we have no feature cache)."""
        return contextlib.nullcontext()

    def _check_call(self, encoder_hidden_states: torch.Tensor | None,
                    pooled_projections: torch.Tensor | None, timestep: Any, img_ids: Any,
                    txt_ids: Any, guidance: Any, joint_attention_kwargs: dict | None) -> None:
        required = dict(encoder_hidden_states=encoder_hidden_states,
                        pooled_projections=pooled_projections, timestep=timestep,
                        img_ids=img_ids, txt_ids=txt_ids)
        missing = [name for name, value in required.items() if value is None]
        if missing:
            raise ValueError(f"FluxTransformer2DModel.forward needs {', '.join(missing)}")
        if self.config.guidance_embeds and guidance is None:
            raise ValueError("this model has guidance_embeds=true (a dev-style model): pass guidance")
        if not self.config.guidance_embeds and guidance is not None:
            raise ValueError("this model has guidance_embeds=false (a schnell-style model): "
                             "pass guidance=None")
        if joint_attention_kwargs:
            raise ValueError(f"joint_attention_kwargs {sorted(joint_attention_kwargs)} are not "
                             "supported (no attention processors, LoRA scale or IP-adapter)")


def _control(samples: Sequence[torch.Tensor], index: int, n_blocks: int, repeat: bool = False) -> torch.Tensor:
    """The ControlNet residual for block ``index``: each sample serves ``ceil(n_blocks / len)``
    consecutive blocks, or with ``repeat`` the samples are cycled."""
    if repeat:
        return samples[index % len(samples)]
    return samples[index // math.ceil(n_blocks / len(samples))]


def _per_sample(value: torch.Tensor | float, batch: int, like: torch.Tensor) -> torch.Tensor:
    """A timestep-like value as a ``[batch]`` tensor on ``like``'s device (scalars broadcast)."""
    value = torch.as_tensor(value, device=like.device)
    return value.expand(batch) if value.ndim == 0 else value.to(like.device)
