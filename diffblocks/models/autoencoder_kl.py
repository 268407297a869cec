"""AutoencoderKL: the KL-regularised VAE of Stable Diffusion, SDXL and Flux.

Config keys and weight names are diffusers' (a ``vae/`` folder loads as is). Large images can
be processed in overlapping tiles (:meth:`AutoencoderKL.enable_tiling`) or one sample at a
time (:meth:`AutoencoderKL.enable_slicing`); tiled results equal diffusers' tiled results.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from diffblocks.models.embeddings import activation
from diffblocks.models.kernels import Conv2d
from diffblocks.models.modeling import Model, ModelConfig, ModelOutput
from diffblocks.models.vae_blocks import Decoder, DiagonalGaussianDistribution, Encoder
from diffblocks.models.vae_tiling import tiled_map


@dataclass(frozen=True)
class AutoencoderKLConfig(ModelConfig):
    """diffusers' ``AutoencoderKL`` config.json, key for key.

    ``scaling_factor`` and ``shift_factor`` are not applied by the model: pipelines map VAE
    latents to model latents as ``(z - shift_factor) * scaling_factor`` and back.
    ``force_upcast`` tells pipelines to decode in float32 (fp16 overflows in SD/SDXL VAEs).
    """

    class_name: ClassVar[str] = "AutoencoderKL"
    bounds: ClassVar[dict[str, tuple[str | None, int]]] = {
        "in_channels": ("model_channels", 1), "out_channels": ("model_channels", 1),
        "latent_channels": ("model_channels", 1), "block_out_channels": ("model_channels", 1),
        "layers_per_block": ("model_layers", 1), "norm_num_groups": ("model_channels", 1),
        "sample_size": ("image_side", 1),
    }

    in_channels: int = 3
    out_channels: int = 3
    down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",)
    up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",)
    block_out_channels: tuple[int, ...] = (64,)
    layers_per_block: int = 1
    act_fn: str = "silu"
    latent_channels: int = 4
    norm_num_groups: int = 32
    sample_size: int | tuple[int, ...] = 32
    scaling_factor: float = 0.18215
    shift_factor: float | None = None
    latents_mean: tuple[float, ...] | None = None
    latents_std: tuple[float, ...] | None = None
    force_upcast: bool = True
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    mid_block_add_attention: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        levels = len(self.block_out_channels)
        self.check_divides("norm_num_groups", "block_out_channels")
        for key, kind in (("down_block_types", "DownEncoderBlock2D"), ("up_block_types", "UpDecoderBlock2D")):
            value = getattr(self, key)
            if list(value) != [kind] * levels:
                raise self.unsupported(key, list(value), f"{[kind] * levels} (one per block_out_channels)")
        try:
            activation(self.act_fn)
        except ValueError as e:
            raise self.unsupported("act_fn", self.act_fn, "silu, swish, mish, gelu, relu") from e

    @property
    def tile_size(self) -> int:
        """Sample size of one tile (the first entry when ``sample_size`` is a pair)."""
        return self.sample_size[0] if isinstance(self.sample_size, tuple) else self.sample_size


@dataclass
class AutoencoderKLOutput(ModelOutput):
    """Result of :meth:`AutoencoderKL.encode`: the posterior over latents."""

    latent_dist: DiagonalGaussianDistribution


@dataclass
class DecoderOutput(ModelOutput):
    """Result of :meth:`AutoencoderKL.decode`: the decoded images."""

    sample: torch.Tensor


_LEGACY_ATTENTION = re.compile(r"^((?:en|de)coder\.mid_block\.attentions\.\d+)\.(query|key|value|proj_attn)\.")
_LEGACY_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


class AutoencoderKL(Model):
    """VAE with a diagonal-Gaussian posterior: ``encode`` images to a latent distribution,
    ``decode`` latents to images. Downsamples by ``2 ** (len(block_out_channels) - 1)``."""

    config_class = AutoencoderKLConfig
    config: AutoencoderKLConfig

    def __init__(self, config: AutoencoderKLConfig | dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        c = self.config
        shape = dict(block_out_channels=c.block_out_channels, layers_per_block=c.layers_per_block,
                     groups=c.norm_num_groups, act_fn=c.act_fn, mid_attention=c.mid_block_add_attention)
        self.encoder = Encoder(c.in_channels, c.latent_channels, **shape)
        self.decoder = Decoder(c.latent_channels, c.out_channels, **shape)
        moments = 2 * c.latent_channels
        self.quant_conv = Conv2d(moments, moments, 1) if c.use_quant_conv else None
        latent = c.latent_channels
        self.post_quant_conv = Conv2d(latent, latent, 1) if c.use_post_quant_conv else None

        # Memory options, as diffusers names them (pipelines may set the tile attributes).
        self.use_slicing = False
        self.use_tiling = False
        self.tile_sample_min_size = c.tile_size
        self.tile_latent_min_size = int(c.tile_size / 2 ** (len(c.block_out_channels) - 1))
        self.tile_overlap_factor = 0.25

    # -- memory options ---------------------------------------------------------------------

    def enable_tiling(self) -> None:
        """Encode/decode large inputs in overlapping tiles of ``sample_size`` pixels."""
        self.use_tiling = True

    def disable_tiling(self) -> None:
        self.use_tiling = False

    def enable_slicing(self) -> None:
        """Encode/decode a batch one sample at a time."""
        self.use_slicing = True

    def disable_slicing(self) -> None:
        self.use_slicing = False

    # -- encode -----------------------------------------------------------------------------

    def _moments(self, x: torch.Tensor) -> torch.Tensor:
        moments = self.encoder(x)
        return moments if self.quant_conv is None else self.quant_conv(moments)

    def _encode_one(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_tiling and max(x.shape[-2:]) > self.tile_sample_min_size:
            return tiled_map(self._moments, x, self.tile_sample_min_size, self.tile_latent_min_size,
                             self.tile_overlap_factor)
        return self._moments(x)

    def encode(self, x: torch.Tensor, return_dict: bool = True
               ) -> AutoencoderKLOutput | tuple[DiagonalGaussianDistribution]:
        """Images ``[B, in_channels, H, W]`` in [-1, 1] -> posterior over latents (``.latent_dist``)."""
        slices = x.split(1) if self.use_slicing and x.shape[0] > 1 else [x]
        posterior = DiagonalGaussianDistribution(torch.cat([self._encode_one(s) for s in slices]))
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    def tiled_encode(self, x: torch.Tensor, return_dict: bool = True
                     ) -> AutoencoderKLOutput | tuple[DiagonalGaussianDistribution]:
        """Encode in tiles regardless of size (what ``encode`` does for large inputs when tiling)."""
        moments = tiled_map(self._moments, x, self.tile_sample_min_size, self.tile_latent_min_size,
                            self.tile_overlap_factor)
        posterior = DiagonalGaussianDistribution(moments)
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    # -- decode -----------------------------------------------------------------------------

    def _pixels(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z if self.post_quant_conv is None else self.post_quant_conv(z))

    def _decode_one(self, z: torch.Tensor) -> torch.Tensor:
        if self.use_tiling and max(z.shape[-2:]) > self.tile_latent_min_size:
            return self.tiled_decode(z).sample
        return self._pixels(z)

    def decode(self, z: torch.Tensor, return_dict: bool = True,
               generator: torch.Generator | None = None) -> DecoderOutput | tuple[torch.Tensor]:
        """Latents ``[B, latent_channels, h, w]`` (unscaled) -> images ``[B, out_channels, H, W]``.

        ``generator`` is accepted for signature compatibility; decoding is deterministic.
        """
        slices = z.split(1) if self.use_slicing and z.shape[0] > 1 else [z]
        images = torch.cat([self._decode_one(s) for s in slices])
        return DecoderOutput(sample=images) if return_dict else (images,)

    def tiled_decode(self, z: torch.Tensor, return_dict: bool = True) -> DecoderOutput | tuple[torch.Tensor]:
        """Decode in overlapping latent tiles, cross-fading the seams."""
        images = tiled_map(self._pixels, z, self.tile_latent_min_size, self.tile_sample_min_size,
                           self.tile_overlap_factor)
        return DecoderOutput(sample=images) if return_dict else (images,)

    # -- round trip -------------------------------------------------------------------------

    def forward(self, sample: torch.Tensor, sample_posterior: bool = False, return_dict: bool = True,
                generator: torch.Generator | None = None) -> DecoderOutput | tuple[torch.Tensor]:
        """Encode then decode, from the posterior's mode or (``sample_posterior``) a sample of it."""
        posterior = self.encode(sample).latent_dist
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        images = self.decode(z).sample
        return DecoderOutput(sample=images) if return_dict else (images,)

    @classmethod
    def convert_legacy_keys(cls, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Old diffusers checkpoints name the mid-block attention ``query/key/value/proj_attn``;
        some store those projections as 1x1 convs. Rename to ``to_q/to_k/to_v/to_out.0``."""
        converted: dict[str, torch.Tensor] = {}
        for key, tensor in state_dict.items():
            match = _LEGACY_ATTENTION.match(key)
            if match:
                key = f"{match[1]}.{_LEGACY_NAMES[match[2]]}.{key[match.end():]}"
                if tensor.ndim == 4:  # [out, in, 1, 1] conv kernel -> linear weight
                    tensor = tensor[:, :, 0, 0]
            converted[key] = tensor
        return super().convert_legacy_keys(converted)
