"""CPU compute routed through oneDNN where torch's default path is slower.

On CPU, ``torch.nn.functional.linear`` runs MKL's sgemm, which on AMD processors (every EPYC /
Ryzen, and the box the benchmarks run on) takes a code path at about half of what the cores do:
an fp32 1024^3 product reaches ~115 GFLOP/s there against ~255 through oneDNN, the library torch
already uses for its 3x3 convolutions. 1x1 convolutions take torch's im2col + sgemm path
(``_slow_conv2d_forward``) for the same reason, and SDPA's fused CPU kernel multiplies through
the same sgemm. So in inference on CPU in fp32, and only above a work size where oneDNN's fixed
cost (~10 µs a call) is paid back, our layers call oneDNN's primitives instead:

* :class:`Linear` / :func:`linear` — ``torch.ops.mkldnn._linear_pointwise``; :func:`linear_gelu`
  the same with the GELU that follows fused into the product, :func:`geglu` a gated GELU as two
  products (the gate's with the GELU fused);
* :class:`Conv2d` — 1x1 convolutions through ``torch.ops.aten.mkldnn_convolution`` (on
  channels-last input: oneDNN's inner product on the NHWC view), and 3x3 ones with many channels
  over few positions as one product of gathered patches;
* :func:`attention` — unmasked attention with many scores per head as two oneDNN products per
  chunk of queries with base-2 exponentials between them (torch's exp2 is ~3x cheaper than its
  exp, and bounded scores need no shift by the row maximum); short key sequences (<= 256 keys:
  text tokens in cross-attention, small latents) as batched products in (keys, queries) layout
  with the same exponentials; the other head dims under 16 through SDPA on heads zero-padded to
  16, the width its kernel is fastest at;
* :func:`use_cpu_kernels` — what the components loader applies to every model it loads for CPU
  fp32: third-party ``nn.Linear`` / ``nn.Conv2d`` layers (transformers' text encoders) become
  the classes above, and convolution weights are stored channels-last (oneDNN's native NHWC:
  3x3 convolutions run 1.2-1.6x faster than from NCHW at the sizes measured, and the
  activations after the first convolution follow in NHWC). :class:`Conv2d` still hands out
  contiguous (NCHW) weights in ``state_dict()``, so saving one with safetensors works as before.

The first eligible call frees one untouched 16 MB block so that glibc serves the routes' MB-sized
chunks from its heap rather than from fresh page mappings (see :func:`_prime_allocator`).

The results equal the default path's to fp32 rounding: the same products summed in another
order (about 1e-6 relative for whole models, 2e-6 with channels-last convolutions). Everything
else — CUDA, half precision, autograd, ``torch.compile`` (inductor does its own lowering), a
masked attention, tiny shapes — takes the stock torch op.
``set_cpu_kernels(False)`` (or ``DIFFBLOCKS_CPU_KERNELS=0`` in the environment) turns the routing
off for the whole process, e.g. to time the stock ops::

    >>> import torch
    >>> from diffblocks.models.kernels import Linear, cpu_kernels_enabled
    >>> layer = Linear(512, 512)
    >>> x = torch.randn(256, 512)
    >>> with torch.no_grad():
    ...     fast = layer(x)
    ...     with cpu_kernels_enabled(False):
    ...         stock = layer(x)
    >>> bool((fast - stock).abs().max() < 1e-4)
    True
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Conv2d", "Linear", "attention", "attention_route", "cpu_kernels_enabled", "geglu", "linear", "linear_gelu",
           "set_cpu_kernels", "use_cpu_kernels"]

#: Multiply-accumulates below which torch's own call is faster than oneDNN's (measured on the
#: bench CPU: 2 x 320 x 1280 is 1.3x slower through oneDNN, 2048 x 32 x 32 already 1.5x faster).
LINEAR_MIN_MACS = 1 << 20
#: The same for 1x1 convolutions on NCHW input (2 x 32 -> 32 channels at 32^2 is slower, 128 -> 256
#: at 24^2 faster); on channels-last input oneDNN is within 10% or faster (2 x 64 -> 32 at 32^2: 0.8x).
CONV_MIN_MACS = 1 << 23
#: 3x3 convolutions (stride 1 or 2, padding 1) as one product of gathered patches with the weight
#: matrix, when the product is deep (``9 * in_channels >= 16 * output positions``) and the patches
#: small: oneDNN's direct convolution handles many channels over few positions badly (2 x 512 ->
#: 512 at 6x6: 0.78x of its time; 2 x 1024 -> 512 at 6x6: 0.58x; SD 1.5's 2 x 1280 at 8x8: 0.36x
#: and at 16x16: 0.70x); below that depth it is as fast or faster (2 x 64 at 6x6, 2 x 256 at 24x24).
CONV3X3_PRODUCT_MIN_DEPTH = 16
CONV3X3_PRODUCT_MAX_PATCHES = 1 << 23
#: Per head, the scores (``q_tokens * k_tokens``) from which two oneDNN products and base-2
#: exponentials (:func:`_onednn_heads`) beat SDPA's fused kernel at any head dim, measured on strided
#: heads as the models pass them: 2 x 8 x 576^2 x 16 0.70x, 1 x 2 x 1536^2 x 16 (tiny Flux) 0.75x,
#: 2 x 8 x 4096^2 x 40 (SD 1.5 at 512 px) 0.65-0.71x, 1 x 1 x 4096^2 x 4 (a VAE mid block) 0.50x;
#: at 256^2 it is level to 1.25x slower. Heads of 64 and more pay from less work:
#: ``ATTENTION_MIN_MACS`` multiply-adds per head (2 x 4 x 256^2 x 64: 0.89x of the softmax version).
ATTENTION_MIN_SCORES = 1 << 17
ATTENTION_MIN_MACS = 1 << 21
ATTENTION_MIN_HEAD_DIM = 64
#: Scores computed at once (queries are taken in chunks of ``ATTENTION_CHUNK_SCORES // k_tokens``):
#: 2 MB, big enough for oneDNN's efficient kernels, small enough to stay near the caches.
ATTENTION_CHUNK_SCORES = 1 << 19
#: SDPA's fused CPU kernel is fastest at a head dim of 16 (one AVX-512 register of fp32) and slower
#: below it: head dims 2-15 zero-padded to 16 run 1.1-1.6x faster (measured where this was the
#: only rule: 1 x 2 heads x 1024^2 tokens d=4 0.68x, d=8 0.75x, d=12 0.89x). Shapes that large now
#: take the oneDNN route; padding serves the small-head shapes neither other rule takes. The zero
#: columns add exact zeros to every score and produce zero output columns, dropped after.
ATTENTION_PAD_BELOW = 16
#: Short key sequences (text tokens in cross-attention, self-attention of small latents): up to
#: this many keys and from ``ATTENTION_SHORT_MIN_SCORES`` to ``ATTENTION_SHORT_MAX_SCORES``
#: scores in all, batched products with base-2 exponentials in place between them beat SDPA's
#: kernel, which tiles keys by 512: 0.39-0.66x of its time from 2 x 8 x 256 x 77 (d=8) to
#: 2 x 8 x 144 x 77 (d=32), 0.56-0.72x for 2 x 8 x 256 x 256 (d=8: padded SDPA 0.81-0.83x), level
#: at head dims of 16-64 over 144-256 keys; with fewer scores SDPA (2 x 8 x 36 x 36, d=64: 1.22x).
ATTENTION_SHORT_KV = 256
ATTENTION_SHORT_MIN_SCORES = 1 << 16
ATTENTION_SHORT_MAX_SCORES = 1 << 21

_ops = torch.ops.mkldnn
#: Scores are computed in base 2 (log2(e) folded into the query scale) because torch's CPU exp2
#: costs about a third of its exp (0.18 vs 0.67 ns an element, AVX-512, in cache).
_LOG2_E = 1.4426950408889634
#: Below this bound on every |score| (base 2), the row maxima are not subtracted: exp2 of +-64 and
#: sums of up to 2^60 such terms stay far inside fp32's range, and its rounding is relative, so
#: the probabilities are the same to rounding. Normed queries and keys (Flux) are always far below.
_UNSHIFTED_BOUND = 64.0
_NO_BIAS = torch.empty(1, 1, 1)  # baddbmm's ``input`` under beta=0: never read
_AVAILABLE = torch.backends.mkldnn.is_available() and hasattr(_ops, "_linear_pointwise")
_PRIMING_BYTES = 16 << 20
_allocator_primed = False
_enabled = os.environ.get("DIFFBLOCKS_CPU_KERNELS", "1").strip().lower() not in ("0", "false", "off", "no")


def set_cpu_kernels(enabled: bool) -> None:
    """Route eligible CPU fp32 inference through oneDNN (the default) or always use torch's ops."""
    global _enabled
    _enabled = bool(enabled)


@contextlib.contextmanager
def cpu_kernels_enabled(enabled: bool) -> Iterator[None]:
    """``set_cpu_kernels`` for the duration of a ``with`` block."""
    before = _enabled
    set_cpu_kernels(enabled)
    try:
        yield
    finally:
        set_cpu_kernels(before)


def _eligible(*tensors: torch.Tensor | None) -> bool:
    if not (_enabled and _AVAILABLE) or torch.compiler.is_compiling():
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t is None:
            continue
        if t.device.type != "cpu" or t.dtype != torch.float32 or (grad and t.requires_grad) or t.layout != torch.strided:
            return False
        if type(t) not in (torch.Tensor, nn.Parameter):  # subclasses (quantised, fake, DTensor) keep their dispatch
            return False
    if not _allocator_primed:
        _prime_allocator()
    return True


def _prime_allocator() -> None:
    """Free one untouched 16 MB block, once: glibc then serves buffers below that size from its heap.

    glibc maps blocks at or above its mmap threshold afresh on every request and unmaps them on
    free; the threshold starts at 128 KB and rises to the size of the largest such block freed
    (up to 32 MB). Every page of a fresh mapping faults on first touch, so a 2 MB score chunk
    requested over and over cost more than its products (1 x 2 x 1536^2 x 16 attention: 7.6 ms
    and ~2200 faults a call, against 3.2 ms and ~30 after this). Real-size models free tens of MB
    early and never meet it; small ones, whose largest buffers are the routes' chunks, do. The
    block is never written, so it costs one map and unmap (no page is touched).
    """
    global _allocator_primed
    _allocator_primed = True
    torch.empty(_PRIMING_BYTES, dtype=torch.uint8)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear``, through oneDNN when eligible (see the module docstring)."""
    # The cheap process-wide checks first: under torch.compile nothing below runs (no shape guards).
    if (_enabled and not torch.compiler.is_compiling() and x.numel() * weight.shape[0] >= LINEAR_MIN_MACS
            and x.is_contiguous() and _eligible(x, weight, bias)):
        return _ops._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, state dict and ``isinstance``) computed by :func:`linear`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return linear(input, self.weight, self.bias)


def linear_gelu(layer: nn.Module, x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """``F.gelu(layer(x), approximate=approximate)``, as one oneDNN product with the GELU applied
    in its epilogue when eligible.

    torch's CPU tanh-GELU is slow (~1.2 ns an element, 5x its erf form); fused, a mid Flux MLP
    projection (576 x 256 -> 1024) takes 1450 instead of 1268 + 697 µs. Only a plain
    :class:`Linear` without hooks is fused: a LoRA wrapper or an offloading hook keeps its
    ``forward``.
    """
    if _fusable(layer, x, approximate):
        return _ops._linear_pointwise(x, layer.weight, layer.bias, "gelu", [], approximate)
    return F.gelu(layer(x), approximate=approximate)


def _fusable(layer: nn.Module, x: torch.Tensor, approximate: str) -> bool:
    if not (_enabled and type(layer) is Linear and not torch.compiler.is_compiling()
            and approximate in ("none", "tanh") and not (layer._forward_hooks or layer._forward_pre_hooks)):
        return False
    return (x.numel() * layer.weight.shape[0] >= LINEAR_MIN_MACS and x.is_contiguous()
            and _eligible(x, layer.weight, layer.bias))


def geglu(layer: nn.Module, x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """Gated GELU: ``value, gate = layer(x).chunk(2, -1); value * F.gelu(gate)``.

    When eligible, the two halves of the projection are two oneDNN products (the weight's row
    halves are views), the GELU in the gate's epilogue, and the product taken in place: no
    chunked strided halves, no separate GELU pass. Level inside the mid bench UNets; ~5% of the
    real SD 1.5 UNet's forward at 512 px, whose 8192 x 320 -> 2 x 1280 projections write 84 MB
    each. A LoRA wrapper or a hooked layer keeps its forward.
    """
    if _fusable(layer, x, approximate) and layer.weight.shape[0] % 2 == 0:
        half = layer.weight.shape[0] // 2
        weight, bias = layer.weight, layer.bias
        value = _ops._linear_pointwise(x, weight[:half], None if bias is None else bias[:half], "none", [], "")
        gate = _ops._linear_pointwise(x, weight[half:], None if bias is None else bias[half:], "gelu", [],
                                      approximate)
        return value.mul_(gate)
    value, gate = layer(x).chunk(2, dim=-1)
    return value * F.gelu(gate, approximate=approximate)


def _conv_pays(x: torch.Tensor, out_channels: int) -> bool:
    # Channels-last input: oneDNN is within 10% or faster at every size measured (torch's path
    # converts to NCHW first); NCHW input: only from CONV_MIN_MACS on.
    if x.is_contiguous(memory_format=torch.channels_last):
        return True
    return x.is_contiguous() and x.numel() * out_channels >= CONV_MIN_MACS


def _im2col_pays(x: torch.Tensor, weight: torch.Tensor, stride: int) -> bool:
    # Both channels-last (the loader's layout): the weight is then already the (out, 3*3*in)
    # matrix of the product, and the patches are cheap to gather from NHWC memory.
    if not (x.is_contiguous(memory_format=torch.channels_last)
            and weight.is_contiguous(memory_format=torch.channels_last)):
        return False
    b, c, h, w = x.shape
    rows = b * ((h - 1) // stride + 1) * ((w - 1) // stride + 1)
    return 9 * c >= CONV3X3_PRODUCT_MIN_DEPTH * rows and rows * 9 * c <= CONV3X3_PRODUCT_MAX_PATCHES


def _conv1x1_as_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    # On NHWC memory a 1x1 convolution is a (positions, in) x (in, out) product of views: oneDNN's
    # inner product skips the convolution primitive's fixed cost (2 x 64 -> 64 at 16x16: 33 vs 45 µs;
    # 2 x 1024 -> 512 at 6x6: 354 vs 860 µs; level from 128 channels at 24x24 up).
    b, c, h, w = x.shape
    out = _ops._linear_pointwise(x.permute(0, 2, 3, 1).reshape(b * h * w, c), weight.reshape(weight.shape[0], c),
                                 bias, "none", [], "")
    return out.view(b, h, w, -1).permute(0, 3, 1, 2)


def _conv3x3_as_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                        stride: int) -> torch.Tensor:
    b, c = x.shape[:2]
    out_channels = weight.shape[0]
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))  # (b, h+2, w+2, c), one copy
    patches = padded.unfold(1, 3, stride).unfold(2, 3, stride)  # (b, ho, wo, c, 3, 3), a view
    ho, wo = patches.shape[1:3]
    cols = patches.permute(0, 1, 2, 4, 5, 3).reshape(b * ho * wo, 9 * c)  # rows in (kh, kw, c) order
    matrix = weight.permute(0, 2, 3, 1).reshape(out_channels, 9 * c)  # a view of channels-last memory
    out = _ops._linear_pointwise(cols, matrix, bias, "none", [], "")
    return out.view(b, ho, wo, out_channels).permute(0, 3, 1, 2)  # channels-last, as F.conv2d returns


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` whose plain 1x1 convolutions, and 3x3 ones over few positions with many
    channels, go through oneDNN products when eligible.

    Other convolutions already run on oneDNN inside ``F.conv2d``.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if _enabled and not torch.compiler.is_compiling() and self.groups == 1 and self.padding_mode == "zeros" \
                and self.dilation == (1, 1) and input.ndim == 4:
            if self.kernel_size == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0):
                if _conv_pays(input, self.out_channels) and _eligible(input, self.weight, self.bias):
                    if input.is_contiguous(memory_format=torch.channels_last):
                        return _conv1x1_as_product(input, self.weight, self.bias)
                    return torch.ops.aten.mkldnn_convolution(input, self.weight, self.bias, [0, 0], [1, 1], [1, 1], 1)
            elif self.kernel_size == (3, 3) and self.padding == (1, 1) and self.stride in ((1, 1), (2, 2)) \
                    and _im2col_pays(input, self.weight, self.stride[0]) and _eligible(input, self.weight, self.bias):
                return _conv3x3_as_product(input, self.weight, self.bias, self.stride[0])
        return super().forward(input)

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        # Weights stored channels-last for speed still leave as plain contiguous tensors:
        # safetensors refuses strided ones, and files must not depend on our in-memory layout.
        super()._save_to_state_dict(destination, prefix, keep_vars)
        key = prefix + "weight"
        if not keep_vars and key in destination and not destination[key].is_contiguous():
            destination[key] = destination[key].contiguous()


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor | None:
    """Unmasked softmax attention on ``(batch, heads, tokens, head_dim)`` computed the faster way
    for its shape, or ``None`` when the stock SDPA call is the better (or the only correct) choice.

    In order (:func:`attention_route`): many scores per head (``ATTENTION_MIN_SCORES``, or
    ``ATTENTION_MIN_MACS`` for heads of ``ATTENTION_MIN_HEAD_DIM``) through oneDNN, whose result
    is a ``(batch, heads, q_tokens, head_dim)`` view of a ``(batch, q_tokens, heads, head_dim)``
    buffer, so merging the heads afterwards is free; short key sequences (``ATTENTION_SHORT_KV``)
    as batched products; head dims under ``ATTENTION_PAD_BELOW`` through SDPA on zero-padded heads.
    """
    if not _enabled or torch.compiler.is_compiling() or q.ndim != 4 or k.ndim != 4 or v.ndim != 4 \
            or k.shape[:2] != q.shape[:2] or v.shape != k.shape or k.shape[3] != q.shape[3]:
        return None
    b, h, n, d = q.shape
    s = k.shape[2]
    if n == 0 or s == 0 or not _eligible(q, k, v):
        return None
    route = attention_route(b, h, n, s, d)
    if route == "short keys":
        return _short_keys(q, k, v)
    if route == "padded":
        pad = (0, ATTENTION_PAD_BELOW - d)
        out = F.scaled_dot_product_attention(F.pad(q, pad), F.pad(k, pad), F.pad(v, pad), scale=d ** -0.5)
        return out[..., :d]
    if route == "oneDNN":
        return _onednn_heads(q, k, v)
    return None


def attention_route(batch: int, heads: int, q_tokens: int, k_tokens: int, head_dim: int) -> str:
    """Which computation :func:`attention` picks for eligible inputs of this shape: "short keys",
    "padded", "oneDNN" or "SDPA" (the stock call).

    >>> from diffblocks.models.kernels import attention_route
    >>> attention_route(2, 8, 256, 77, 8)  # cross-attention over CLIP's 77 tokens, small model
    'short keys'
    >>> attention_route(2, 8, 256, 256, 8)  # self-attention of the same model
    'short keys'
    >>> attention_route(1, 4, 300, 400, 4)  # head dims under 16 over longer keys
    'padded'
    >>> attention_route(1, 1, 4096, 4096, 4)  # a 4-channel VAE mid block at 64x64
    'oneDNN'
    >>> attention_route(1, 24, 4096, 4096, 128)  # Flux at 1024 px
    'oneDNN'
    >>> attention_route(2, 10, 1024, 77, 64)  # large heads first, even over short keys
    'oneDNN'
    >>> attention_route(2, 8, 36, 36, 64)  # little work
    'SDPA'
    """
    scores = q_tokens * k_tokens
    wide = head_dim >= ATTENTION_MIN_HEAD_DIM and scores * head_dim >= ATTENTION_MIN_MACS
    if scores >= ATTENTION_MIN_SCORES or wide:
        return "oneDNN"
    if k_tokens <= ATTENTION_SHORT_KV and \
            ATTENTION_SHORT_MIN_SCORES <= batch * heads * scores <= ATTENTION_SHORT_MAX_SCORES:
        return "short keys"
    if 1 < head_dim < ATTENTION_PAD_BELOW:
        return "padded"
    return "SDPA"


def _short_keys(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # Scores are laid out (keys, queries): the value product then writes (head_dim, queries) rows,
    # the wide output MKL's batched product is fast at (2 x 8 x 256 x 77, d=8: 0.39x of SDPA's time
    # against 0.67x with (queries, keys) scores), and the sums over keys are vectorised over queries.
    b, h, n, d = q.shape
    s = k.shape[2]
    scale = d ** -0.5 * _LOG2_E
    queries_t, keys = q.reshape(b * h, n, d).transpose(1, 2), k.reshape(b * h, s, d)
    values_t = v.reshape(b * h, s, d).transpose(1, 2)
    shift = _needs_shift(q, k, scale)
    out_t = torch.empty((b * h, d, n), dtype=q.dtype)
    group = max(1, ATTENTION_CHUNK_SCORES // (n * s))  # heads at once
    for start in range(0, b * h, group):
        heads = slice(start, start + group)
        scores_t = torch.baddbmm(_NO_BIAS, keys[heads], queries_t[heads], beta=0, alpha=scale)
        total = _exp2_in_place(scores_t, shift, keys_dim=1).sum(dim=1, keepdim=True)
        torch.bmm(values_t[heads], scores_t, out=out_t[heads]).div_(total)
    return out_t.view(b, h, d, n).transpose(2, 3)


def _needs_shift(q: torch.Tensor, k: torch.Tensor, scale: float) -> bool:
    # |q.k| <= |q| |k|: when every score is small, exp2 needs no shift by the row maximum (NaN or
    # inf fails the test and takes the shifted path, which propagates them like the softmax).
    bound = torch.linalg.vector_norm(q, dim=-1).amax() * torch.linalg.vector_norm(k, dim=-1).amax() * scale
    return not float(bound) < _UNSHIFTED_BOUND


def _exp2_in_place(scores: torch.Tensor, shift: bool, keys_dim: int = -1) -> torch.Tensor:
    if shift:
        scores.sub_(scores.amax(dim=keys_dim, keepdim=True))
    return scores.exp2_()


def _onednn_heads(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    b, h, n, d = q.shape
    s = k.shape[2]
    scaled = torch.empty((b, h, n, d), dtype=q.dtype)
    torch.mul(q, d ** -0.5 * _LOG2_E, out=scaled)  # one pass: scale, base 2 and contiguous
    keys = k.contiguous()
    values_t = v.transpose(2, 3).contiguous()  # (b, h, d, s): the "weight" layout of the second product
    shift = _needs_shift(scaled, keys, 1.0)
    out = torch.empty((b, n, h, d), dtype=q.dtype)
    chunk = max(1, ATTENTION_CHUNK_SCORES // s)  # queries at once
    for i in range(b):
        for j in range(h):
            for start in range(0, n, chunk):
                rows = slice(start, start + chunk)
                scores = _ops._linear_pointwise(scaled[i, j, rows], keys[i, j], None, "none", [], "")
                total = _exp2_in_place(scores, shift).sum(dim=-1, keepdim=True)
                out[i, rows, j] = _ops._linear_pointwise(scores, values_t[i, j], None, "none", [], "").div_(total)
    return out.transpose(1, 2)


def use_cpu_kernels(module: Any) -> Any:
    """Prepare a loaded model for CPU fp32 inference (see the module docstring): exact
    ``nn.Linear`` / ``nn.Conv2d`` layers become :class:`Linear` / :class:`Conv2d` (neither adds
    state: parameters, state-dict names and ``isinstance`` checks stay) and a model with
    convolutions stores their weights channels-last. Anything else — not a module, another
    device or dtype, the routing switched off — is returned untouched.
    """
    if not (_enabled and _AVAILABLE) or not isinstance(module, nn.Module):
        return module
    first = next((p for p in module.parameters() if p.is_floating_point()), None)
    if first is None or first.device.type != "cpu" or first.dtype != torch.float32:
        return module
    convs = False
    for layer in module.modules():
        if type(layer) is nn.Linear:
            layer.__class__ = Linear
        elif type(layer) is nn.Conv2d:
            layer.__class__ = Conv2d
        convs = convs or isinstance(layer, Conv2d)
    if convs:
        module.to(memory_format=torch.channels_last)
    return module
