"""oneDNN routing for CPU fp32 inference (diffblocks.models.kernels): the same numbers as torch's
stock ops to fp32 rounding, the oneDNN primitive really runs when eligible, and everything that
is not eligible (autograd, other dtypes, small shapes, masks, the switch off) takes the stock op."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

from diffblocks.models import kernels
from diffblocks.models.kernels import Conv2d, Linear, cpu_kernels_enabled

pytestmark = pytest.mark.skipif(not kernels._AVAILABLE, reason="torch built without oneDNN")


def _ops_run(fn) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {event.key for event in prof.key_averages()}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("shape", [(256, 512), (2, 300, 96)])
def test_linear_matches_stock_and_uses_onednn(shape):
    torch.manual_seed(0)
    layer = Linear(shape[-1], 384)
    x = torch.randn(*shape)
    with torch.no_grad():
        stock = F.linear(x, layer.weight, layer.bias)
        assert "mkldnn::_linear_pointwise" in _ops_run(lambda: layer(x))
        assert _rel(layer(x), stock) < 1e-5  # fp32 rounding of a reordered sum
    assert isinstance(layer, nn.Linear) and set(layer.state_dict()) == {"weight", "bias"}


def test_linear_without_bias():
    torch.manual_seed(1)
    layer = Linear(512, 640, bias=False)
    x = torch.randn(64, 512)
    with torch.no_grad():
        assert _rel(layer(x), x @ layer.weight.t()) < 1e-5


@pytest.mark.parametrize("case", ["grad", "float64", "small", "switched off", "non-contiguous"])
def test_linear_falls_back_to_the_stock_op(case):
    torch.manual_seed(2)
    layer = Linear(512, 512)
    x = torch.randn(256, 512)
    if case == "float64":
        layer, x = layer.double(), x.double()
    if case == "small":
        x = x[:2]
    if case == "non-contiguous":
        x = torch.randn(512, 256).t()

    def call():
        if case == "grad":
            return layer(x.requires_grad_())
        with torch.no_grad(), cpu_kernels_enabled(case != "switched off"):
            return layer(x)

    ops = _ops_run(call)
    assert "mkldnn::_linear_pointwise" not in ops
    out = call()
    assert torch.allclose(out, F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-6)
    if case == "grad":
        out.sum().backward()  # autograd still works on the stock path
        assert layer.weight.grad is not None


def test_conv_1x1_matches_stock_and_uses_onednn():
    torch.manual_seed(3)
    conv = Conv2d(128, 256, kernel_size=1)
    x = torch.randn(2, 128, 24, 24)
    with torch.no_grad():
        stock = F.conv2d(x, conv.weight, conv.bias)
        assert "aten::mkldnn_convolution" in _ops_run(lambda: conv(x))
        assert _rel(conv(x), stock) < 1e-5
        # Channels-last input goes to oneDNN at any size, as an inner product on the NHWC view
        # (output channels-last, like the convolution's); small NCHW input stays on the stock path.
        small = Conv2d(32, 48, kernel_size=1)
        y = torch.randn(2, 32, 16, 12)
        ops = _ops_run(lambda: small(y))
        assert "aten::mkldnn_convolution" not in ops and "mkldnn::_linear_pointwise" not in ops
        for weight_layout in (torch.contiguous_format, torch.channels_last):
            small.to(memory_format=weight_layout)
            y_cl = y.contiguous(memory_format=torch.channels_last)
            assert "mkldnn::_linear_pointwise" in _ops_run(lambda: small(y_cl))
            out = small(y_cl)
            assert out.shape == (2, 48, 16, 12) and out.is_contiguous(memory_format=torch.channels_last)
            assert _rel(out, F.conv2d(y, small.weight, small.bias)) < 1e-5
        no_bias = Conv2d(32, 8, kernel_size=1, bias=False)
        assert _rel(no_bias(y_cl), F.conv2d(y, no_bias.weight)) < 1e-5
        # 3x3 kernels keep F.conv2d (which already runs oneDNN): same result exactly.
        conv3 = Conv2d(16, 16, kernel_size=3, padding=1)
        y = torch.randn(1, 16, 8, 8)
        assert torch.equal(conv3(y), F.conv2d(y, conv3.weight, conv3.bias, padding=1))


def _qkv(shape, seed: int, strided_keys: bool = False):
    """q (and k, v if asked) as the strided (batch, heads, tokens, dim) views the models pass."""
    b, h, n, s, d = shape
    torch.manual_seed(seed)
    q = torch.randn(b, n, h, d).transpose(1, 2)
    if strided_keys:
        return q, torch.randn(b, s, h, d).transpose(1, 2), torch.randn(b, s, h, d).transpose(1, 2)
    return q, torch.randn(b, h, s, d), torch.randn(b, h, s, d)


def _assert_as_accurate_as_sdpa(out, q, k, v) -> None:
    assert out is not None and out.shape == q.shape
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double()).float()
    stock = F.scaled_dot_product_attention(q, k, v)
    assert (out - ref).abs().max() <= 2 * (stock - ref).abs().max() + 1e-6


@pytest.mark.parametrize("shape", [(1, 2, 1100, 1000, 64), (2, 1, 1030, 1024, 128), (1, 2, 700, 600, 16),
                                   (1, 1, 500, 400, 4)])
def test_attention_matches_sdpa(shape, monkeypatch):
    monkeypatch.setattr(kernels, "ATTENTION_CHUNK_SCORES", 1 << 17)  # several query chunks per head
    q, k, v = _qkv(shape, seed=4)
    with torch.no_grad():
        assert kernels.attention_route(*shape) == "oneDNN"
        _assert_as_accurate_as_sdpa(kernels.attention(q, k, v), q, k, v)


@pytest.mark.parametrize("query_scale", [1.0, 40.0])
@pytest.mark.parametrize("shape", [(1, 2, 600, 500, 16), (2, 4, 128, 77, 16)])
def test_attention_subtracts_row_maxima_only_for_large_scores(shape, query_scale):
    # Unit-variance heads of 16 bound every score by ~20 (base 2); scaled by 40, exp2 could overflow.
    q, k, v = _qkv(shape, seed=7, strided_keys=True)
    q = q * query_scale
    with torch.no_grad():
        assert kernels.attention_route(*shape) in ("oneDNN", "short keys")
        ops = _ops_run(lambda: kernels.attention(q, k, v))
        assert ("aten::sub_" in ops) == (query_scale > 1)
        _assert_as_accurate_as_sdpa(kernels.attention(q, k, v), q, k, v)


@pytest.mark.parametrize("shape", [(1, 1, 600, 500, 16), (1, 2, 500, 77, 16)])
def test_attention_propagates_nan_like_sdpa(shape):
    q, k, v = _qkv(shape, seed=8)
    q = q.clone()
    q[0, 0, 3, 0] = float("nan")
    with torch.no_grad():
        out = kernels.attention(q, k, v)
        stock = F.scaled_dot_product_attention(q, k, v)
    assert torch.equal(out.isnan(), stock.isnan()) and out.isnan().any()
    assert torch.allclose(out.nan_to_num(), stock.nan_to_num(), atol=1e-5)


def test_attention_declines_what_it_does_not_do():
    q = torch.randn(1, 2, 150, 16)
    assert kernels.attention(q, q, q) is None  # too little work for any rule to pay
    narrow = torch.randn(1, 2, 300, 40)
    assert kernels.attention(narrow, narrow, narrow) is None  # few scores a head of 40: SDPA
    big = torch.randn(1, 2, 1100, 64)
    assert kernels.attention(big.double(), big.double(), big.double()) is None
    with cpu_kernels_enabled(False):
        assert kernels.attention(big, big, big) is None
    assert kernels.attention(big.requires_grad_(), big, big) is None
    one = torch.randn(1, 2, 300, 1)
    assert kernels.attention(one, one, one) is None  # head dim 1: padding to 16 measured slower
    small = torch.randn(1, 2, 300, 8)
    assert kernels.attention(small, small, small.double()) is None  # mixed dtypes: SDPA raises its own error
    assert kernels.attention(small, small[:, :, :0], small[:, :, :0]) is None  # no keys


def _sdpa_shapes(fn) -> list[list[int]]:
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    return [e.input_shapes[0] for e in prof.events() if e.name == "aten::_scaled_dot_product_flash_attention_for_cpu"]


@pytest.mark.parametrize("shape", [(1, 1, 300, 300, 4), (2, 8, 100, 300, 8), (1, 2, 300, 300, 12)])
def test_small_head_dims_run_sdpa_padded_to_16(shape):
    q, k, v = _qkv(shape, seed=5)
    with torch.no_grad():
        assert [shape[-1] for shape in _sdpa_shapes(lambda: kernels.attention(q, k, v))] == [16]
        # Zero columns add exact zeros; only the kernel's summation order may differ.
        _assert_as_accurate_as_sdpa(kernels.attention(q, k, v), q, k, v)


@pytest.mark.parametrize("shape", [(2, 8, 256, 77, 8), (2, 4, 128, 77, 64), (1, 2, 300, 128, 16),
                                   (2, 8, 256, 256, 8), (1, 3, 200, 250, 12)])
def test_short_key_sequences_use_batched_products(shape):
    q, k, v = _qkv(shape, seed=6, strided_keys=True)
    with torch.no_grad():
        ops = _ops_run(lambda: kernels.attention(q, k, v))
        assert {"aten::baddbmm", "aten::bmm"} <= ops
        assert "aten::_scaled_dot_product_flash_attention_for_cpu" not in ops
        _assert_as_accurate_as_sdpa(kernels.attention(q, k, v), q, k, v)


def test_short_key_rule_stops_at_its_bounds(monkeypatch):
    q = torch.randn(1, 2, 400, 16)
    long_keys = torch.randn(1, 2, kernels.ATTENTION_SHORT_KV + 1, 16)
    keys = torch.randn(1, 2, 100, 16)
    with torch.no_grad():
        assert kernels.attention(q, long_keys, long_keys) is None  # 257 keys, head dim 16: SDPA
        assert kernels.attention(q[:, :, :300], keys, keys) is None  # 60000 scores: too few to pay
        assert kernels.attention(q, keys, keys) is not None  # 80000
        monkeypatch.setattr(kernels, "ATTENTION_SHORT_MAX_SCORES", 400 * 2 * 100 - 1)
        assert kernels.attention(q, keys, keys) is None  # too many scores at once: SDPA tiles them


@pytest.mark.parametrize(("shape", "stride", "bias"), [((2, 512, 6, 6), 1, True), ((1, 256, 5, 7), 1, False),
                                                       ((2, 256, 12, 12), 2, True), ((1, 128, 7, 5), 2, False)])
def test_deep_3x3_convolution_runs_as_one_product(shape, stride, bias):
    torch.manual_seed(7)
    conv = Conv2d(shape[1], 96, kernel_size=3, stride=stride, padding=1, bias=bias)
    conv.to(memory_format=torch.channels_last)
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        out = conv(x)
        calls = [e.input_shapes[1] for e in _profiled_events(lambda: conv(x)) if e.name == "mkldnn::_linear_pointwise"]
        assert calls == [[96, 9 * shape[1]]]  # the weight as a (out, 3*3*in) matrix
        ref = F.conv2d(x.double(), conv.weight.double(), None if conv.bias is None else conv.bias.double(),
                       stride=stride, padding=1).float()
        stock = F.conv2d(x, conv.weight, conv.bias, stride=stride, padding=1)
    assert out.shape == stock.shape and out.is_contiguous(memory_format=torch.channels_last)
    assert (out - ref).abs().max() <= 2 * (stock - ref).abs().max() + 1e-6


def test_3x3_convolution_keeps_the_stock_kernel_where_it_is_as_fast():
    conv = Conv2d(64, 64, kernel_size=3, padding=1).to(memory_format=torch.channels_last)
    shallow = torch.randn(2, 64, 24, 24).contiguous(memory_format=torch.channels_last)  # many positions
    deep_nchw = torch.randn(2, 64, 2, 2)  # deep enough, but NCHW: no free weight matrix
    with torch.no_grad():
        for x in (shallow, deep_nchw):
            assert "mkldnn::_linear_pointwise" not in _ops_run(lambda: conv(x))
        deep = deep_nchw.contiguous(memory_format=torch.channels_last)
        assert "mkldnn::_linear_pointwise" in _ops_run(lambda: conv(deep))
        with cpu_kernels_enabled(False):
            assert "mkldnn::_linear_pointwise" not in _ops_run(lambda: conv(deep))
    grouped = Conv2d(64, 64, kernel_size=3, padding=1, groups=2).to(memory_format=torch.channels_last)
    with torch.no_grad():
        assert "mkldnn::_linear_pointwise" not in _ops_run(lambda: grouped(deep))


def _profiled_events(fn):
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    return prof.events()


@pytest.mark.parametrize("approximate", ["tanh", "none"])
def test_linear_gelu_fuses_the_activation_into_the_product(approximate):
    torch.manual_seed(8)
    layer = Linear(96, 384)
    x = torch.randn(2, 300, 96)
    with torch.no_grad():
        out = kernels.linear_gelu(layer, x, approximate)
        ops = _ops_run(lambda: kernels.linear_gelu(layer, x, approximate))
        assert "mkldnn::_linear_pointwise" in ops and "aten::gelu" not in ops
        ref = F.gelu(F.linear(x.double(), layer.weight.double(), layer.bias.double()), approximate=approximate)
        stock = F.gelu(layer(x), approximate=approximate)
    assert (out - ref.float()).abs().max() <= 2 * (stock - ref.float()).abs().max() + 1e-6


def test_linear_gelu_keeps_forward_for_wrapped_hooked_small_or_training_layers():
    layer = Linear(96, 384)
    x = torch.randn(2, 300, 96)
    seen = []
    handle = layer.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    with torch.no_grad():
        kernels.linear_gelu(layer, x, "tanh")
    handle.remove()
    assert seen == [(2, 300, 384)]  # the hook ran: the layer's forward was called

    class Wrapped(Linear):  # what an adapter library's subclass or wrapper looks like to us
        def forward(self, input: torch.Tensor) -> torch.Tensor:
            return super().forward(input) + 1

    wrapped = Wrapped(96, 384)
    with torch.no_grad():
        assert torch.allclose(kernels.linear_gelu(wrapped, x, "tanh"),
                              F.gelu(F.linear(x, wrapped.weight, wrapped.bias) + 1, approximate="tanh"), atol=1e-5)
        for small in (torch.randn(2, 8, 96), x.double()):
            assert "aten::gelu" in _ops_run(lambda: kernels.linear_gelu(layer.to(small.dtype), small, "tanh"))
        layer.float()
        with cpu_kernels_enabled(False):
            assert "aten::gelu" in _ops_run(lambda: kernels.linear_gelu(layer, x, "tanh"))
    out = kernels.linear_gelu(layer, x, "tanh")  # autograd on: the stock ops, so gradients flow
    out.sum().backward()
    assert layer.weight.grad is not None


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_geglu_runs_as_two_products_with_the_gelu_fused(approximate):
    torch.manual_seed(9)
    layer = Linear(64, 2 * 160)
    x = torch.randn(2, 300, 64)
    with torch.no_grad():
        out = kernels.geglu(layer, x, approximate)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            kernels.geglu(layer, x, approximate)
        names = [e.name for e in prof.events()]
        assert names.count("mkldnn::_linear_pointwise") == 2 and "aten::gelu" not in names
        value, gate = F.linear(x.double(), layer.weight.double(), layer.bias.double()).chunk(2, dim=-1)
        ref = (value * F.gelu(gate, approximate=approximate)).float()
        value, gate = layer(x).chunk(2, dim=-1)
        stock = value * F.gelu(gate, approximate=approximate)
    assert out.shape == (2, 300, 160)
    assert (out - ref).abs().max() <= 2 * (stock - ref).abs().max() + 1e-6


def test_geglu_keeps_forward_when_it_cannot_fuse():
    x = torch.randn(2, 300, 64)
    no_bias = Linear(64, 320, bias=False)
    with torch.no_grad():
        value, gate = F.linear(x, no_bias.weight).chunk(2, dim=-1)
        assert _rel(kernels.geglu(no_bias, x), value * F.gelu(gate)) < 1e-5
        assert "aten::gelu" in _ops_run(lambda: kernels.geglu(no_bias, torch.randn(2, 4, 64)))  # small
        handle = no_bias.register_forward_pre_hook(lambda module, args: None)
        assert "aten::gelu" in _ops_run(lambda: kernels.geglu(no_bias, x))
        handle.remove()


_FAULTS_PER_CALL = """
import resource, sys, torch
from diffblocks.models import kernels
kernels._allocator_primed = sys.argv[1] == "unprimed"  # True: as if already primed, so never primed
torch.set_num_threads(1)
q, k, v = (torch.randn(1, 1536, 2, 16).transpose(1, 2) for _ in range(3))
with torch.no_grad():
    for _ in range(3):
        kernels.attention(q, k, v)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        kernels.attention(q, k, v)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mmap threshold")
def test_attention_chunks_are_not_fresh_page_mappings_on_every_call():
    # 2 MB score chunks, the largest buffers in this process: without the primed allocator each one
    # is mapped afresh (~2200 page faults a call), which costs more than the products themselves.
    def faults(mode: str) -> float:
        done = subprocess.run([sys.executable, "-c", _FAULTS_PER_CALL, mode], capture_output=True, text=True,
                              check=True)
        return float(done.stdout.split()[-1])

    assert faults("primed") < 600 < faults("unprimed")
