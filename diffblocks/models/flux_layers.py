"""Building blocks of the Flux transformer: rotary embeddings, adaptive norms, the two block kinds.

Attribute names mirror diffusers' checkpoints (``norm1.linear``, ``attn.add_q_proj``,
``ff.net.0.proj``, ``proj_mlp`` ...) so that Flux weights load unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from diffblocks.models import kernels
from diffblocks.models.attention import FeedForward, attention
from diffblocks.models.embeddings import TimestepEmbedding, timestep_embedding
from diffblocks.models.kernels import Linear

Rope = tuple[torch.Tensor, torch.Tensor]


# --- rotary position embedding -------------------------------------------------------------


def rope_tables(ids: torch.Tensor, axes_dims: Sequence[int], theta: float = 10000.0) -> Rope:
    """cos/sin tables ``[S, sum(axes_dims)]`` for positions ``ids [S, n_axes]``, one RoPE per axis.

    Frequencies are computed in float64 (as the reference does; float32 loses ~1e-4 at large
    positions) and handed out as float32. Each frequency is repeated twice because the rotation
    acts on adjacent channel pairs.
    """
    freq_dtype = torch.float32 if ids.device.type in ("mps", "npu") else torch.float64
    pos = ids.float()
    cos, sin = [], []
    for axis, dim in enumerate(axes_dims):
        inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=freq_dtype, device=ids.device) / dim)
        angles = torch.outer(pos[:, axis].to(freq_dtype), inv_freq)  # [S, dim/2]
        cos.append(angles.cos().repeat_interleave(2, dim=1).float())
        sin.append(angles.sin().repeat_interleave(2, dim=1).float())
    return torch.cat(cos, dim=-1), torch.cat(sin, dim=-1)


def apply_rope(x: torch.Tensor, rope: Rope) -> torch.Tensor:
    """Rotate adjacent channel pairs of ``x [B, S, H, D]`` by the angles in ``rope`` (fp32 math)."""
    cos, sin = (t[None, :, None, :] for t in rope)  # [1, S, 1, D]
    real, imag = x.unflatten(-1, (-1, 2)).unbind(-1)  # each [B, S, H, D/2]
    rotated = torch.stack((-imag, real), dim=-1).flatten(-2)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


# --- conditioning -----------------------------------------------------------------------------


class TimeTextEmbedding(nn.Module):
    """Sum of the timestep, optional guidance and pooled-text embeddings (``time_text_embed``).

    Timestep and guidance arrive already multiplied by 1000; both use the same 256-channel
    sinusoid (cos first, no frequency shift) with their own MLP. The pooled text goes through an
    MLP of the same ``linear_1 -> SiLU -> linear_2`` shape.
    """

    def __init__(self, dim: int, pooled_dim: int, with_guidance: bool, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.timestep_embedder = TimestepEmbedding(freq_dim, dim)
        if with_guidance:
            self.guidance_embedder = TimestepEmbedding(freq_dim, dim)
        self.text_embedder = TimestepEmbedding(pooled_dim, dim)

    def forward(self, timestep: torch.Tensor, pooled: torch.Tensor,
                guidance: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.timestep_embedder(self._sinusoid(timestep, pooled.dtype))
        if guidance is not None:
            emb = emb + self.guidance_embedder(self._sinusoid(guidance, pooled.dtype))
        return emb + self.text_embedder(pooled)

    def _sinusoid(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return timestep_embedding(t, self.freq_dim, flip_sin_to_cos=True, downscale_freq_shift=0).to(dtype)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation of a normalised ``x [B, S, C]`` by per-sample ``shift``/``scale [B, C]``."""
    return x * (1 + scale[:, None]) + shift[:, None]


class AdaLayerNormZero(nn.Module):
    """LayerNorm whose shift/scale (and ``n_params - 2`` gates etc.) come from the conditioning.

    ``n_params`` is 6 for a double-stream block (shift, scale, gate of attention, then of the MLP)
    and 3 for a single-stream block (shift, scale, gate). Returns the modulated input and the rest.
    """

    def __init__(self, dim: int, n_params: int) -> None:
        super().__init__()
        self.n_params = n_params
        self.linear = Linear(dim, n_params * dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        shift, scale, *rest = self.linear(F.silu(emb)).chunk(self.n_params, dim=1)
        return (modulate(self.norm(x), shift, scale), *rest)


class AdaLayerNormContinuous(nn.Module):
    """Final adaptive LayerNorm. Note the checkpoint's order: scale first, then shift."""

    def __init__(self, dim: int, cond_dim: int) -> None:
        super().__init__()
        self.linear = Linear(cond_dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(F.silu(emb).to(x.dtype)).chunk(2, dim=1)
        return modulate(self.norm(x), shift, scale)


# --- attention and MLP ------------------------------------------------------------------------


class FluxAttention(nn.Module):
    """Multi-head self-attention with RMS-normed q/k and RoPE.

    With ``context_dim`` set it is the double-stream *joint* attention: the text stream has its own
    projections (``add_*_proj``, ``to_add_out``), text tokens are put before image tokens, one
    attention runs over both, and the result is split back. ``has_out=False`` is the single-stream
    variant, whose output projection is fused with the MLP's in the block.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None,
                 has_out: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        inner = heads * head_dim
        self.head_dim = head_dim
        self.norm_q = nn.RMSNorm(head_dim, eps=eps)
        self.norm_k = nn.RMSNorm(head_dim, eps=eps)
        self.to_q, self.to_k, self.to_v = (Linear(dim, inner) for _ in range(3))
        if has_out:
            self.to_out = nn.ModuleList([Linear(inner, dim)])
        if context_dim is not None:
            self.norm_added_q = nn.RMSNorm(head_dim, eps=eps)
            self.norm_added_k = nn.RMSNorm(head_dim, eps=eps)
            self.add_q_proj, self.add_k_proj, self.add_v_proj = (
                Linear(context_dim, inner) for _ in range(3))
            self.to_add_out = Linear(inner, context_dim)

    def _qkv(self, x: torch.Tensor, q: nn.Module, k: nn.Module, v: nn.Module,
             norm_q: nn.Module, norm_k: nn.Module) -> tuple[torch.Tensor, ...]:
        def heads(t: torch.Tensor) -> torch.Tensor:  # [B, S, H*D] -> [B, S, H, D]
            return t.unflatten(-1, (-1, self.head_dim))
        return norm_q(heads(q(x))), norm_k(heads(k(x))), heads(v(x))

    def forward(self, x: torch.Tensor, rope: Rope,
                context: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self._qkv(x, self.to_q, self.to_k, self.to_v, self.norm_q, self.norm_k)
        if context is not None:  # joint attention: text tokens first, as the RoPE ids are ordered
            cq, ck, cv = self._qkv(context, self.add_q_proj, self.add_k_proj, self.add_v_proj,
                                   self.norm_added_q, self.norm_added_k)
            q, k, v = (torch.cat(pair, dim=1) for pair in ((cq, q), (ck, k), (cv, v)))

        q, k = apply_rope(q, rope), apply_rope(k, rope)
        out = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        out = out.transpose(1, 2).flatten(2).to(q.dtype)  # [B, S, H*D]

        if context is None:
            return out
        context_out, out = out.split([context.shape[1], x.shape[1]], dim=1)
        return self.to_out[0](out), self.to_add_out(context_out)


def _clip_fp16(x: torch.Tensor) -> torch.Tensor:
    # fp16 activations of the residual stream overflow on real checkpoints; clip like the reference.
    return x.clip(-65504, 65504) if x.dtype == torch.float16 else x


# --- the two block kinds -------------------------------------------------------------------------


class FluxTransformerBlock(nn.Module):
    """Double-stream (MMDiT) block: image and text keep separate weights but attend jointly."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.norm1 = AdaLayerNormZero(dim, 6)
        self.norm1_context = AdaLayerNormZero(dim, 6)
        self.attn = FluxAttention(dim, heads, head_dim, context_dim=dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(dim, activation_fn="gelu-approximate")
        self.norm2_context = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ff_context = FeedForward(dim, activation_fn="gelu-approximate")

    def forward(self, x: torch.Tensor, context: torch.Tensor, temb: torch.Tensor,
                rope: Rope) -> tuple[torch.Tensor, torch.Tensor]:
        # modulation parameters for both streams
        x_mod, gate, mlp_shift, mlp_scale, mlp_gate = self.norm1(x, temb)
        c_mod, c_gate, c_mlp_shift, c_mlp_scale, c_mlp_gate = self.norm1_context(context, temb)

        # joint attention, gated residuals
        attn_x, attn_c = self.attn(x_mod, rope, c_mod)
        x = x + gate[:, None] * attn_x
        context = context + c_gate[:, None] * attn_c

        # per-stream MLPs, gated residuals
        x = x + mlp_gate[:, None] * self.ff(modulate(self.norm2(x), mlp_shift, mlp_scale))
        c_mlp = self.ff_context(modulate(self.norm2_context(context), c_mlp_shift, c_mlp_scale))
        context = context + c_mlp_gate[:, None] * c_mlp
        return _clip_fp16(context), x


class FluxSingleTransformerBlock(nn.Module):
    """Single-stream block over the joined [text, image] sequence.

    Attention and MLP run in parallel from one modulated input, and one linear (``proj_out``)
    projects their concatenation back, which fuses the attention output projection with the MLP's.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        mlp_dim = int(dim * mlp_ratio)
        self.norm = AdaLayerNormZero(dim, 3)
        self.proj_mlp = Linear(dim, mlp_dim)
        self.proj_out = Linear(dim + mlp_dim, dim)
        self.attn = FluxAttention(dim, heads, head_dim, has_out=False)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, rope: Rope) -> torch.Tensor:
        x_mod, gate = self.norm(x, temb)
        mlp = kernels.linear_gelu(self.proj_mlp, x_mod, "tanh")
        fused = torch.cat([self.attn(x_mod, rope), mlp], dim=2)
        return _clip_fp16(x + gate[:, None] * self.proj_out(fused))
