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
* attention (:mod:`diffblocks.models.cpu_attention`, which shares this module's switch and
  eligibility rules) — unmasked attention as oneDNN products with base-2 exponentials between
  them, or short key sequences as batched products;
* :func:`use_cpu_kernels` — what the components loader applies to every model it loads for CPU
  fp32: third-party ``nn.Linear`` / ``nn.Conv2d`` layers (transformers' text encoders) become
  the classes above, and convolution weights are stored channels-last (oneDNN's native NHWC:
  3x3 convolutions run 1.2-1.6x faster than from NCHW at the sizes measured, and the
  activations after the first convolution follow in NHWC). :class:`Conv2d` still hands out
  contiguous (NCHW) weights in ``state_dict()``, so saving one with safetensors works as before.

The first eligible call frees one untouched 16 MB block so that glibc serves the attention routes'
MB-sized chunks from its heap rather than from fresh page mappings (see :func:`_prime_allocator`).

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

__all__ = ["Conv2d", "Linear", "cpu_kernels_enabled", "geglu", "linear", "linear_gelu",
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
_ops = torch.ops.mkldnn
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
