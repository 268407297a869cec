"""oneDNN routing for CPU fp32 inference (diffblocks.models.kernels): the same numbers as torch's
stock ops to fp32 rounding, the oneDNN primitive really runs when eligible, and everything that
is not eligible (autograd, other dtypes, small shapes, masks, the switch off) takes the stock op."""

from __future__ import annotations

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
