"""Feature maps leave the transformer blocks in (B, C, H, W) layout: convolutions after a
channels-last view ran ~15% slower on CPU (mid-size SDXL UNet, bench/pipelines.py)."""

from __future__ import annotations

import pytest
import torch

from diffblocks.models.attention import Transformer2D


@pytest.mark.parametrize("linear", [True, False])
def test_transformer2d_output_is_contiguous(linear: bool) -> None:
    block = Transformer2D(2, 8, 32, cross_attention_dim=16, use_linear_projection=linear)
    out = block(torch.randn(1, 32, 4, 4), torch.randn(1, 3, 16))
    assert out.shape == (1, 32, 4, 4) and out.is_contiguous()
