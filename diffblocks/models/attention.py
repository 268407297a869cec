"""Attention and transformer layers shared by the UNet, the VAE and Flux.

Attention compute is one function over ``torch.nn.functional.scaled_dot_product_attention``
(unmasked CPU fp32 attention of most shapes is computed faster: see `diffblocks.models.cpu_attention`);
the modules around it only project, reshape and normalise. Attribute names (``to_q``,
``to_out.0``, ``ff.net.0.proj``, ``proj_in`` ...) equal diffusers' state-dict names.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from diffblocks.models import cpu_attention, kernels
from diffblocks.models.kernels import Conv2d, Linear


_BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "math": SDPBackend.MATH,
}
_backend: list[SDPBackend] | None = None  # None: let torch pick


def set_attention_backend(name: str | None) -> None:
    """Pin the SDPA kernel for every model ("flash", "efficient", "cudnn", "math"; None = torch's choice)."""
    global _backend
    if name is not None and name not in _BACKENDS:
        raise ValueError(f"unknown attention backend {name!r} (choose from {', '.join(_BACKENDS)} or None)")
    _backend = None if name is None else [_BACKENDS[name]]


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Scaled dot-product attention on ``(batch, heads, tokens, head_dim)`` tensors.

    ``mask`` is additive (0 keeps, large negative drops) or boolean, broadcastable to
    ``(batch, heads, q_tokens, k_tokens)``. SDPA kernels accumulate the softmax in fp32, which is
    why diffusers' ``upcast_attention`` / ``upcast_softmax`` need no extra work here.
    """
    if _backend is None:
        fast = cpu_attention.attention(q, k, v) if mask is None else None
        if fast is not None:
            return fast
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with sdpa_kernel(_backend):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, H*D) -> (B, H, L, D)."""
    b, n, _ = x.shape
    return x.view(b, n, heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, L, D) -> (B, L, H*D)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class Attention(nn.Module):
    """Multi-head (self- or cross-) attention with diffusers' parameter names.

    Accepts ``(B, L, C)`` tokens or a ``(B, C, H, W)`` feature map (flattened to tokens and
    restored). ``norm_num_groups`` adds a pre-attention ``group_norm``; ``residual_connection`` and
    ``rescale_output_factor`` give the VAE mid-block form ``(x + attn(norm(x))) / factor``.
    """

    def __init__(
        self,
        query_dim: int,
        cross_attention_dim: int | None = None,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
        bias: bool = False,
        out_bias: bool = True,
        norm_num_groups: int | None = None,
        eps: float = 1e-5,
        residual_connection: bool = False,
        rescale_output_factor: float = 1.0,
    ) -> None:
        super().__init__()
        inner = heads * dim_head
        context_dim = cross_attention_dim or query_dim
        self.heads = heads
        self.residual_connection = residual_connection
        self.rescale_output_factor = rescale_output_factor
        self.group_norm = (
            nn.GroupNorm(norm_num_groups, query_dim, eps=eps, affine=True) if norm_num_groups else None
        )
        self.to_q = Linear(query_dim, inner, bias=bias)
        self.to_k = Linear(context_dim, inner, bias=bias)
        self.to_v = Linear(context_dim, inner, bias=bias)
        self.to_out = nn.ModuleList([Linear(inner, query_dim, bias=out_bias), nn.Dropout(dropout)])

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        residual = hidden_states
        if self.group_norm is not None:
            hidden_states = self.group_norm(hidden_states)
        spatial = hidden_states.ndim == 4
        if spatial:  # (B, C, H, W) -> (B, H*W, C)
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.flatten(2).transpose(1, 2)

        # Project and attend.
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        q = split_heads(self.to_q(hidden_states), self.heads)
        k = split_heads(self.to_k(context), self.heads)
        v = split_heads(self.to_v(context), self.heads)
        if attention_mask is not None and attention_mask.ndim == 3:  # (B, Lq|1, Lk): same for every head
            attention_mask = attention_mask.unsqueeze(1)
        out = merge_heads(attention(q, k, v, attention_mask))
        out = self.to_out[1](self.to_out[0](out))

        if spatial:  # (B, H*W, C) -> (B, C, H, W)
            out = out.transpose(1, 2).reshape(b, c, h, w)
        if self.residual_connection:
            out = out + residual
        return out / self.rescale_output_factor if self.rescale_output_factor != 1.0 else out


class GELU(nn.Module):
    """Linear projection then GELU (``approximate="tanh"`` for diffusers' "gelu-approximate")."""

    def __init__(self, dim_in: int, dim_out: int, approximate: str = "none", bias: bool = True) -> None:
        super().__init__()
        self.proj = Linear(dim_in, dim_out, bias=bias)
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.linear_gelu(self.proj, x, self.approximate)


class GEGLU(nn.Module):
    """Gated GELU (Shazeer 2020, "GLU Variants Improve Transformer"): one projection, two halves."""

    def __init__(self, dim_in: int, dim_out: int, approximate: str = "none", bias: bool = True) -> None:
        super().__init__()
        self.proj = Linear(dim_in, dim_out * 2, bias=bias)
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.geglu(self.proj, x, self.approximate)


_ACTIVATIONS: dict[str, tuple[type[nn.Module], str]] = {
    "gelu": (GELU, "none"),
    "gelu-approximate": (GELU, "tanh"),
    "geglu": (GEGLU, "none"),
    "geglu-approximate": (GEGLU, "tanh"),
}


class FeedForward(nn.Module):
    """The transformer MLP: ``net.0`` (projection + activation), ``net.1`` dropout, ``net.2`` linear."""

    def __init__(
        self,
        dim: int,
        dim_out: int | None = None,
        mult: int = 4,
        dropout: float = 0.0,
        activation_fn: str = "geglu",
        inner_dim: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if activation_fn not in _ACTIVATIONS:
            raise ValueError(f"FeedForward: activation_fn {activation_fn!r} is not one of {sorted(_ACTIVATIONS)}")
        inner = inner_dim or dim * mult
        act_cls, approximate = _ACTIVATIONS[activation_fn]
        self.net = nn.ModuleList(
            [act_cls(dim, inner, approximate=approximate, bias=bias), nn.Dropout(dropout), Linear(inner, dim_out or dim, bias=bias)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class BasicTransformerBlock(nn.Module):
    """Pre-norm transformer layer of the SD UNets: self-attention, cross-attention, feed-forward.

    With ``only_cross_attention`` the first attention also attends to the text (SD 2 x4 upscaler).
    """

    def __init__(
        self,
        dim: int,
        num_attention_heads: int,
        attention_head_dim: int,
        cross_attention_dim: int | None = None,
        dropout: float = 0.0,
        activation_fn: str = "geglu",
        attention_bias: bool = False,
        only_cross_attention: bool = False,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.only_cross_attention = only_cross_attention
        heads = {"heads": num_attention_heads, "dim_head": attention_head_dim, "dropout": dropout, "bias": attention_bias}
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn1 = Attention(dim, cross_attention_dim if only_cross_attention else None, **heads)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps) if cross_attention_dim is not None else None
        self.attn2 = Attention(dim, cross_attention_dim, **heads) if cross_attention_dim is not None else None
        self.norm3 = nn.LayerNorm(dim, eps=norm_eps)
        self.ff = FeedForward(dim, dropout=dropout, activation_fn=activation_fn)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        context = encoder_hidden_states if self.only_cross_attention else None
        hidden_states = hidden_states + self.attn1(self.norm1(hidden_states), context, attention_mask)
        if self.attn2 is not None:
            hidden_states = hidden_states + self.attn2(
                self.norm2(hidden_states), encoder_hidden_states, encoder_attention_mask
            )
        return hidden_states + self.ff(self.norm3(hidden_states))


def additive_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A (B, L) keep-mask of 1/0 becomes a (B, 1, L) additive bias, as diffusers does; others pass."""
    if mask is None or mask.ndim != 2:
        return mask
    return ((1 - mask.to(dtype)) * -10000.0).unsqueeze(1)


class Transformer2D(nn.Module):
    """A stack of transformer layers over a feature map (diffusers' ``Transformer2DModel``).

    GroupNorm, ``proj_in`` (1x1 conv, or linear with ``use_linear_projection`` as in SD 2 / SDXL),
    the layers, ``proj_out``, plus the residual.
    """

    def __init__(
        self,
        num_attention_heads: int,
        attention_head_dim: int,
        in_channels: int,
        num_layers: int = 1,
        cross_attention_dim: int | None = None,
        norm_num_groups: int = 32,
        use_linear_projection: bool = False,
        only_cross_attention: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        inner = num_attention_heads * attention_head_dim
        self.use_linear_projection = use_linear_projection
        self.norm = nn.GroupNorm(norm_num_groups, in_channels, eps=1e-6, affine=True)
        # proj_in/out: 1x1 convs, or linears over tokens (same maths, different weight shapes).
        self.proj_in: nn.Module = (
            Linear(in_channels, inner) if use_linear_projection else Conv2d(in_channels, inner, kernel_size=1)
        )
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(
                inner,
                num_attention_heads,
                attention_head_dim,
                cross_attention_dim=cross_attention_dim,
                dropout=dropout,
                only_cross_attention=only_cross_attention,
            )
            for _ in range(num_layers)
        )
        self.proj_out: nn.Module = (
            Linear(inner, in_channels) if use_linear_projection else Conv2d(inner, in_channels, kernel_size=1)
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        residual = hidden_states
        b, _, h, w = hidden_states.shape
        attention_mask = additive_mask(attention_mask, hidden_states.dtype)
        encoder_attention_mask = additive_mask(encoder_attention_mask, hidden_states.dtype)

        # Feature map -> tokens: (B, C, H, W) -> (B, H*W, inner), a transposed view. Measured: making
        # it contiguous here is slower on CPU (the stream stays channel-major, proj_out needs no copy).
        x = self.norm(hidden_states)
        if self.use_linear_projection:
            x = self.proj_in(x.flatten(2).transpose(1, 2))
        else:
            x = self.proj_in(x).flatten(2).transpose(1, 2)

        for block in self.transformer_blocks:
            x = block(x, encoder_hidden_states, attention_mask, encoder_attention_mask)

        # Tokens -> feature map
        if self.use_linear_projection:
            x = self.proj_out(x).transpose(1, 2).reshape(b, -1, h, w)
        else:
            x = self.proj_out(x.transpose(1, 2).reshape(b, -1, h, w))
        # residual first: the sum takes its (B, C, H, W) layout. The linear branch's x is a
        # channels-last view, and following convolutions ran ~15% slower on it (mid SDXL UNet).
        return residual + x
