"""Unmasked softmax attention for CPU fp32 inference, computed the faster way for its shape.

:func:`attention` takes ``(batch, heads, tokens, head_dim)`` tensors and returns ``None`` when the
stock ``scaled_dot_product_attention`` is the better (or the only correct) choice; the models'
attention function (:func:`diffblocks.models.attention.attention`) then calls SDPA. It runs under
the same eligibility rules and switch as the rest of :mod:`diffblocks.models.kernels` (CPU, fp32,
no autograd, not under ``torch.compile``, ``DIFFBLOCKS_CPU_KERNELS=0`` turns it off). The routes
(:func:`attention_route`):

* **oneDNN** — many scores per head: per head and chunk of queries, two oneDNN products
  (``_linear_pointwise``, fp32 on every CPU) with base-2 exponentials between them;
* **short keys** — up to ``ATTENTION_SHORT_KV`` keys (text tokens in cross-attention,
  self-attention of small latents): batched products over all heads, scores laid out (keys,
  queries), exponentials in place;
* **padded** — other head dims under 16: SDPA on heads zero-padded to 16, its fastest width.

Two numerical choices make the first two cheaper than a softmax and equal to it to rounding:

* Scores are computed in base 2 (log2(e) folded into the query scale): torch's CPU ``exp2`` costs
  about a third of its ``exp`` (0.18 vs 0.67 ns an element, AVX-512, in cache).
* The row maxima are not subtracted when the scores are small. The oneDNN route bounds every
  score by ``max|q| * max|k|`` first (two cheap passes next to its products); the short-keys route
  checks afterwards that every row's sum of exponentials lies in ``[2^-64, 2^64]`` and redoes a
  chunk with the shift if not. Either way no term overflowed, every row's largest term is a normal
  float, and fp32 rounding is relative, so the probabilities equal the shifted ones to rounding.
  NaN or inf fails both tests and takes the shifted path, which propagates them like SDPA.

The short-keys products are batched matrix products, which torch runs on MKL's sgemm in fp32 —
on AMD processors (every EPYC and Ryzen) at about half of what the cores do, since MKL takes its
AVX2 path there. torch hands fp32 batched products to oneDNN's matmul only under the "bf16"
fp32-precision hint of ``torch.backends.mkldnn.matmul``, which allows oneDNN to round inputs to
bfloat16 where it has kernels for that (AMX) and is otherwise not taken. So the hint is set
around our products only, and only for product shapes for which a probe on this machine showed
fp32 results bit for bit (:func:`_products_keep_fp32`); elsewhere MKL runs them as before. On the
bench CPU (AMD EPYC, AVX-512) that makes tiny SDXL's self-attention, 2 x 4 heads x 256^2 x 16,
0.57-0.61x of SDPA's time (it was level). The hint is process-wide while set: another thread's fp32
products in that window take oneDNN's matmul too, on a machine where it kept fp32 at every shape
probed (one that rounds fails the probe, so the hint is never set there).

    >>> import torch
    >>> from diffblocks.models.cpu_attention import attention
    >>> q, k, v = (torch.randn(2, 4, 256, 16) for _ in range(3))
    >>> out = attention(q, k, v)  # a short-keys shape
    >>> bool((out - torch.nn.functional.scaled_dot_product_attention(q, k, v)).abs().max() < 1e-5)
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from diffblocks.models import kernels

__all__ = ["attention", "attention_route"]

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
#: kernel, which tiles keys by 512 (products on oneDNN, see the module docstring): 0.28-0.33x of
#: its time for 2 x 8 x 256 x 77 (d=8) and 2 x 8 x 576 x 77 (d=16), 0.34x for 2 x 8 x 256^2 (d=8),
#: 0.57x for 2 x 4 x 256^2 (d=16); with fewer scores SDPA (2 x 8 x 36 x 36, d=64: 1.22x on MKL).
ATTENTION_SHORT_KV = 256
ATTENTION_SHORT_MIN_SCORES = 1 << 16
ATTENTION_SHORT_MAX_SCORES = 1 << 21

_LOG2_E = 1.4426950408889634
#: Bound on every |score| (base 2) under which the oneDNN route skips the shift: exp2 of +-64 and
#: sums of up to 2^60 such terms stay far inside fp32's range.
_UNSHIFTED_BOUND = 64.0
#: The short-keys route's test afterwards: every row's sum of unshifted exponentials in this range.
_SUM_RANGE = (2.0 ** -64, 2.0 ** 64)
_NO_BIAS = torch.empty(1, 1, 1)  # baddbmm's ``input`` under beta=0: never read
_MATMUL_SETTING = getattr(torch.backends.mkldnn, "matmul", None)
if not hasattr(_MATMUL_SETTING, "fp32_precision"):  # older torch: no hint, MKL as before
    _MATMUL_SETTING = None
_HINT = "bf16"
#: (m, k, n) of a product -> whether oneDNN's matmul returned fp32-exact results under the hint.
_fp32_kept: dict[tuple[int, int, int], bool] = {}


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor | None:
    """Unmasked softmax attention on ``(batch, heads, tokens, head_dim)`` computed the faster way
    for its shape, or ``None`` when the stock SDPA call is the better (or the only correct) choice.

    In order (:func:`attention_route`): many scores per head (``ATTENTION_MIN_SCORES``, or
    ``ATTENTION_MIN_MACS`` for heads of ``ATTENTION_MIN_HEAD_DIM``) through oneDNN, whose result
    is a ``(batch, heads, q_tokens, head_dim)`` view of a ``(batch, q_tokens, heads, head_dim)``
    buffer, so merging the heads afterwards is free; short key sequences (``ATTENTION_SHORT_KV``)
    as batched products; head dims under ``ATTENTION_PAD_BELOW`` through SDPA on zero-padded heads.
    """
    if not kernels._enabled or torch.compiler.is_compiling() or q.ndim != 4 or k.ndim != 4 or v.ndim != 4 \
            or k.shape[:2] != q.shape[:2] or v.shape != k.shape or k.shape[3] != q.shape[3]:
        return None
    b, h, n, d = q.shape
    s = k.shape[2]
    if n == 0 or s == 0 or not kernels._eligible(q, k, v):
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

    >>> from diffblocks.models.cpu_attention import attention_route
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
    # the wide output batched products are fast at (2 x 8 x 256 x 77, d=8: 0.39x of SDPA's time
    # against 0.67x with (queries, keys) scores). The values carry one more row of ones, so the same
    # product also sums the weights over keys: one more output row costs ~3 µs where a separate
    # sum over the 2 MB of a 2 x 4 x 256^2 chunk costs ~27.
    b, h, n, d = q.shape
    s = k.shape[2]
    scale = d ** -0.5 * _LOG2_E
    queries_t, keys = q.reshape(b * h, n, d).transpose(1, 2), k.reshape(b * h, s, d)
    values = torch.empty((b * h, s, d + 1), dtype=q.dtype)
    values[..., :d].view(b, h, s, d).copy_(v)
    values[..., d] = 1.0
    values_t = values.transpose(1, 2)  # (b * h, d + 1, s)
    out_t = torch.empty((b * h, d + 1, n), dtype=q.dtype)
    group = max(1, ATTENTION_CHUNK_SCORES // (n * s))  # heads at once
    with _onednn_products((s, d, n), (d + 1, s, n)):
        for start in range(0, b * h, group):
            heads = slice(start, start + group)
            weights = torch.baddbmm(_NO_BIAS, keys[heads], queries_t[heads], beta=0, alpha=scale).exp2_()
            torch.bmm(values_t[heads], weights, out=out_t[heads])
            total = out_t[heads, d:]
            if not _sums_in_range(total):  # large scores, NaN or inf: again, shifted
                weights = torch.baddbmm(_NO_BIAS, keys[heads], queries_t[heads], beta=0, alpha=scale)
                weights.sub_(weights.amax(dim=1, keepdim=True)).exp2_()
                torch.bmm(values_t[heads], weights, out=out_t[heads])
            out_t[heads, :d].div_(total)
    return out_t[:, :d].view(b, h, d, n).transpose(2, 3)


def _sums_in_range(total: torch.Tensor) -> bool:
    # NaN compares false: a NaN row takes the shifted path too.
    low, high = torch.aminmax(total)
    return _SUM_RANGE[0] <= float(low) and float(high) <= _SUM_RANGE[1]


@contextlib.contextmanager
def _onednn_products(*shapes: tuple[int, int, int]) -> Iterator[None]:
    """Batched fp32 products of these (m, k, n) shapes inside the block run on oneDNN's matmul,
    where this machine keeps them exact under the hint (see the module docstring); else on MKL."""
    if _MATMUL_SETTING is None or not all(_products_keep_fp32(*shape) for shape in shapes):
        yield
        return
    with _hinted():
        yield


@contextlib.contextmanager
def _hinted() -> Iterator[None]:
    before = _MATMUL_SETTING.fp32_precision
    _MATMUL_SETTING.fp32_precision = _HINT
    try:
        yield
    finally:
        _MATMUL_SETTING.fp32_precision = before


def _products_keep_fp32(m: int, k: int, n: int,
                        product: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = torch.bmm) -> bool:
    """Whether (2, m, k) x (2, k, n) fp32 products under the hint equal fp32 arithmetic exactly.

    1 + 2^-10 needs 11 significant bits (bfloat16 keeps 8): on either operand, times ones, summed k
    times, the exact result k * (1 + 2^-10) is an fp32 number for k < 2^13, and any rounding of an
    input to bfloat16 gives k instead. Probed once per shape (kernel choice can depend on it).
    """
    key = (m, k, n)
    kept = _fp32_kept.get(key)
    if kept is None:
        kept = k < 1 << 13  # beyond, the exact sum needs more bits than fp32 has: no test, no hint
        if kept:
            fine = torch.full((2, m, k), 1 + 2 ** -10), torch.full((2, k, n), 1 + 2 ** -10)
            ones = torch.ones(2, m, k), torch.ones(2, k, n)
            exact = k * (1 + 2 ** -10)
            with _hinted():
                kept = bool((product(fine[0], ones[1]) == exact).all()) \
                    and bool((product(ones[0], fine[1]) == exact).all())
        _fp32_kept[key] = kept
    return kept


def _needs_shift(q: torch.Tensor, k: torch.Tensor, scale: float) -> bool:
    # |q.k| <= |q| |k|: when every score is small, exp2 needs no shift by the row maximum (NaN or
    # inf fails the test and takes the shifted path, which propagates them like the softmax).
    bound = torch.linalg.vector_norm(q, dim=-1).amax() * torch.linalg.vector_norm(k, dim=-1).amax() * scale
    return not float(bound) < _UNSHIFTED_BOUND


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
    linear = torch.ops.mkldnn._linear_pointwise
    for i in range(b):
        for j in range(h):
            for start in range(0, n, chunk):
                rows = slice(start, start + chunk)
                scores = linear(scaled[i, j, rows], keys[i, j], None, "none", [], "")
                if shift:
                    scores.sub_(scores.amax(dim=-1, keepdim=True))
                total = scores.exp2_().sum(dim=-1, keepdim=True)
                out[i, rows, j] = linear(scores, values_t[i, j], None, "none", [], "").div_(total)
    return out.transpose(1, 2)
