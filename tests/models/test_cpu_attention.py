"""CPU fp32 attention (diffblocks.models.cpu_attention): each route as accurate as SDPA against a
float64 reference, taken only for the shapes its rule names, NaN propagated like SDPA, and the
oneDNN hint for batched products set only where this machine keeps them exact, and always undone."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from diffblocks.models import cpu_attention, kernels
from diffblocks.models.kernels import cpu_kernels_enabled
from tests.models.test_kernels import _ops_run

pytestmark = pytest.mark.skipif(not kernels._AVAILABLE, reason="torch built without oneDNN")


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
    monkeypatch.setattr(cpu_attention, "ATTENTION_CHUNK_SCORES", 1 << 17)  # several query chunks per head
    q, k, v = _qkv(shape, seed=4)
    with torch.no_grad():
        assert cpu_attention.attention_route(*shape) == "oneDNN"
        _assert_as_accurate_as_sdpa(cpu_attention.attention(q, k, v), q, k, v)


@pytest.mark.parametrize("query_scale", [1.0, 40.0])
@pytest.mark.parametrize("shape", [(1, 2, 600, 500, 16), (2, 4, 128, 77, 16)])
def test_attention_subtracts_row_maxima_only_for_large_scores(shape, query_scale):
    # Unit-variance heads of 16 bound every score by ~20 (base 2); scaled by 40, exp2 could overflow.
    q, k, v = _qkv(shape, seed=7, strided_keys=True)
    q = q * query_scale
    with torch.no_grad():
        assert cpu_attention.attention_route(*shape) in ("oneDNN", "short keys")
        ops = _ops_run(lambda: cpu_attention.attention(q, k, v))
        assert ("aten::sub_" in ops) == (query_scale > 1)
        _assert_as_accurate_as_sdpa(cpu_attention.attention(q, k, v), q, k, v)


@pytest.mark.parametrize("shape", [(1, 1, 600, 500, 16), (1, 2, 500, 77, 16)])
def test_attention_propagates_nan_like_sdpa(shape):
    q, k, v = _qkv(shape, seed=8)
    q = q.clone()
    q[0, 0, 3, 0] = float("nan")
    with torch.no_grad():
        out = cpu_attention.attention(q, k, v)
        stock = F.scaled_dot_product_attention(q, k, v)
    assert torch.equal(out.isnan(), stock.isnan()) and out.isnan().any()
    assert torch.allclose(out.nan_to_num(), stock.nan_to_num(), atol=1e-5)


def test_attention_declines_what_it_does_not_do():
    q = torch.randn(1, 2, 150, 16)
    assert cpu_attention.attention(q, q, q) is None  # too little work for any rule to pay
    narrow = torch.randn(1, 2, 300, 40)
    assert cpu_attention.attention(narrow, narrow, narrow) is None  # few scores a head of 40: SDPA
    big = torch.randn(1, 2, 1100, 64)
    assert cpu_attention.attention(big.double(), big.double(), big.double()) is None
    with cpu_kernels_enabled(False):
        assert cpu_attention.attention(big, big, big) is None
    assert cpu_attention.attention(big.requires_grad_(), big, big) is None
    one = torch.randn(1, 2, 300, 1)
    assert cpu_attention.attention(one, one, one) is None  # head dim 1: padding to 16 measured slower
    small = torch.randn(1, 2, 300, 8)
    assert cpu_attention.attention(small, small, small.double()) is None  # mixed dtypes: SDPA raises its own error
    assert cpu_attention.attention(small, small[:, :, :0], small[:, :, :0]) is None  # no keys


def _sdpa_shapes(fn) -> list[list[int]]:
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    return [e.input_shapes[0] for e in prof.events() if e.name == "aten::_scaled_dot_product_flash_attention_for_cpu"]


@pytest.mark.parametrize("shape", [(1, 1, 300, 300, 4), (2, 8, 100, 300, 8), (1, 2, 300, 300, 12)])
def test_small_head_dims_run_sdpa_padded_to_16(shape):
    q, k, v = _qkv(shape, seed=5)
    with torch.no_grad():
        assert [shape[-1] for shape in _sdpa_shapes(lambda: cpu_attention.attention(q, k, v))] == [16]
        # Zero columns add exact zeros; only the kernel's summation order may differ.
        _assert_as_accurate_as_sdpa(cpu_attention.attention(q, k, v), q, k, v)


@pytest.mark.parametrize("shape", [(2, 8, 256, 77, 8), (2, 4, 128, 77, 64), (1, 2, 300, 128, 16),
                                   (2, 8, 256, 256, 8), (1, 3, 200, 250, 12)])
def test_short_key_sequences_use_batched_products(shape):
    q, k, v = _qkv(shape, seed=6, strided_keys=True)
    with torch.no_grad():
        ops = _ops_run(lambda: cpu_attention.attention(q, k, v))
        assert {"aten::baddbmm", "aten::bmm"} <= ops
        assert "aten::_scaled_dot_product_flash_attention_for_cpu" not in ops
        _assert_as_accurate_as_sdpa(cpu_attention.attention(q, k, v), q, k, v)


def test_short_key_rule_stops_at_its_bounds(monkeypatch):
    q = torch.randn(1, 2, 400, 16)
    long_keys = torch.randn(1, 2, cpu_attention.ATTENTION_SHORT_KV + 1, 16)
    keys = torch.randn(1, 2, 100, 16)
    with torch.no_grad():
        assert cpu_attention.attention(q, long_keys, long_keys) is None  # 257 keys, head dim 16: SDPA
        assert cpu_attention.attention(q[:, :, :300], keys, keys) is None  # 60000 scores: too few to pay
        assert cpu_attention.attention(q, keys, keys) is not None  # 80000
        monkeypatch.setattr(cpu_attention, "ATTENTION_SHORT_MAX_SCORES", 400 * 2 * 100 - 1)
        assert cpu_attention.attention(q, keys, keys) is None  # too many scores at once: SDPA tiles them


def test_large_scores_redo_only_their_chunk_shifted(monkeypatch):
    # Four head groups; only the third has scores big enough to overflow exp2 unshifted.
    monkeypatch.setattr(cpu_attention, "ATTENTION_CHUNK_SCORES", 2 * 200 * 77)
    q, k, v = _qkv((2, 4, 200, 77, 16), seed=11, strided_keys=True)
    q = q.clone()
    q[1, 0] *= 60.0
    with torch.no_grad():
        events = [e.name for e in _profiled_events(lambda: cpu_attention.attention(q, k, v))]
        assert events.count("aten::baddbmm") == 4 + 1 and events.count("aten::sub_") == 1
        _assert_as_accurate_as_sdpa(cpu_attention.attention(q, k, v), q, k, v)


def test_rows_of_only_very_negative_scores_match_sdpa():
    # Every score of these rows is about -500 (base 2): unshifted, exp2 underflows to a zero sum.
    torch.manual_seed(12)
    direction = torch.randn(16)
    k = direction + 0.01 * torch.randn(1, 2, 77, 16)
    q = torch.randn(1, 2, 500, 16)
    q[0, 1, :10] = -8.0 * direction
    v = torch.randn(1, 2, 77, 16)
    with torch.no_grad():
        assert cpu_attention.attention_route(1, 2, 500, 77, 16) == "short keys"
        out = cpu_attention.attention(q, k, v)
    assert torch.isfinite(out).all()
    _assert_as_accurate_as_sdpa(out, q, k, v)


def _profiled_events(fn):
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return prof.events()


def test_the_onednn_hint_is_set_only_around_products_this_machine_keeps_exact(monkeypatch):
    setting = torch.backends.mkldnn.matmul
    seen = []
    in_range = cpu_attention._sums_in_range
    monkeypatch.setattr(cpu_attention, "_sums_in_range", lambda total: seen.append(setting.fp32_precision)
                        or in_range(total))
    q, k, v = _qkv((2, 4, 256, 77, 16), seed=13, strided_keys=True)
    before = setting.fp32_precision
    setting.fp32_precision = "ieee"  # a user's own setting, to be left as it was
    try:
        with torch.no_grad():
            monkeypatch.setattr(cpu_attention, "_fp32_kept", {(77, 16, 256): True, (17, 77, 256): True})
            _assert_as_accurate_as_sdpa(cpu_attention.attention(q, k, v), q, k, v)
            assert seen == ["bf16"] and setting.fp32_precision == "ieee"
            monkeypatch.setattr(cpu_attention, "_fp32_kept", {(77, 16, 256): True, (17, 77, 256): False})
            _assert_as_accurate_as_sdpa(cpu_attention.attention(q, k, v), q, k, v)
            assert seen == ["bf16", "ieee"] and setting.fp32_precision == "ieee"

            def fails(total):
                raise RuntimeError("inside the products")

            monkeypatch.setattr(cpu_attention, "_fp32_kept", {(77, 16, 256): True, (17, 77, 256): True})
            monkeypatch.setattr(cpu_attention, "_sums_in_range", fails)
            with pytest.raises(RuntimeError, match="inside the products"):
                cpu_attention.attention(q, k, v)
        assert setting.fp32_precision == "ieee"  # undone on the way out too
    finally:
        setting.fp32_precision = before


def test_the_probe_catches_products_rounded_to_bfloat16(monkeypatch):
    monkeypatch.setattr(cpu_attention, "_fp32_kept", {})
    calls = []

    def rounding(a, b):  # what oneDNN does under the hint on a CPU with bfloat16 kernels (AMX)
        calls.append(1)
        return torch.bmm(a.bfloat16().float(), b.bfloat16().float())

    assert cpu_attention._products_keep_fp32(64, 16, 48, product=rounding) is False
    assert cpu_attention._products_keep_fp32(64, 16, 48, product=rounding) is False
    assert len(calls) == 1  # probed once (the first product already differs), then remembered
    assert cpu_attention._products_keep_fp32(64, 16, 40) is True  # torch's own products, any CPU: exact
    assert cpu_attention._products_keep_fp32(1, 1 << 13, 1, product=rounding) is False  # too deep to test
    assert len(calls) == 1
    q, k, v = _qkv((2, 4, 256, 77, 16), seed=14, strided_keys=True)
    monkeypatch.setattr(cpu_attention, "_fp32_kept", {(77, 16, 256): False, (17, 77, 256): False})
    with torch.no_grad():
        _assert_as_accurate_as_sdpa(cpu_attention.attention(q, k, v), q, k, v)  # on MKL


_ONEDNN_MATMULS = """
import torch
from diffblocks.models import cpu_attention
q, k, v = (torch.randn(2, 4, 256, 16) for _ in range(3))
with torch.no_grad():
    cpu_attention.attention(q, k, v)
"""


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(),
                    reason="torch sends fp32 products to oneDNN only on CPUs with bfloat16 support")
def test_short_key_products_run_on_onednn_matmul():
    done = subprocess.run([sys.executable, "-c", _ONEDNN_MATMULS], capture_output=True, text=True, check=True,
                          env={**os.environ, "ONEDNN_VERBOSE": "1"})
    matmuls = [line for line in done.stdout.splitlines() if line.startswith("onednn_verbose") and ",exec,cpu,matmul," in line]
    assert len(matmuls) == 2 * 2 + 2  # the probe's two products for each of two shapes, then the two products


_FAULTS_PER_CALL = """
import resource, sys, torch
from diffblocks.models import cpu_attention, kernels
kernels._allocator_primed = sys.argv[1] == "unprimed"  # True: as if already primed, so never primed
torch.set_num_threads(1)
q, k, v = (torch.randn(1, 1536, 2, 16).transpose(1, 2) for _ in range(3))
with torch.no_grad():
    for _ in range(3):
        cpu_attention.attention(q, k, v)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        cpu_attention.attention(q, k, v)
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
