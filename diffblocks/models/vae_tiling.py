"""Overlapping-tile processing for the VAE, so large images run in bounded memory.

The algorithm is the one diffusers' AutoencoderKL uses (and results must match it): tiles of
``tile_in`` pixels start every ``tile_in * (1 - overlap)`` pixels, each tile is mapped, each
output tile is linearly cross-faded over ``tile_out * overlap`` rows/columns with the tile above
and the tile to its left (already faded themselves, in row-major order), and the top-left
``tile_out - blend`` square of every tile is kept.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def blend_into(prev: torch.Tensor, tile: torch.Tensor, extent: int, dim: int) -> None:
    """Cross-fade the last ``extent`` rows (``dim=2``) or columns (``dim=3``) of ``prev`` into the
    first ones of ``tile``, in place: weight of ``prev`` goes linearly from 1 down to 1/extent."""
    extent = min(prev.shape[dim], tile.shape[dim], extent)
    if extent <= 0:
        return
    # weights made in float64 then cast, to round exactly like Python-float scalars would
    # (half-precision tiles blend in float32, as their kernels compute with scalars anyway)
    w = torch.arange(extent, dtype=torch.float64, device=tile.device) / extent
    w_dtype = torch.promote_types(tile.dtype, torch.float32)
    view = [1, 1, 1, 1]
    view[dim] = extent
    w_tile = w.to(w_dtype).view(view)
    w_prev = (1 - w).to(w_dtype).view(view)
    head = tile.narrow(dim, 0, extent)
    tail = prev.narrow(dim, prev.shape[dim] - extent, extent)
    head.copy_(tail * w_prev + head * w_tile)


def tiled_map(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile_in: int,
              tile_out: int, overlap: float = 0.25) -> torch.Tensor:
    """Apply ``fn`` (which scales spatial size by ``tile_out / tile_in``) tile by tile to
    ``x [B, C, H, W]`` and stitch the results with cross-faded seams."""
    stride = int(tile_in * (1 - overlap))
    blend = int(tile_out * overlap)
    keep = tile_out - blend
    height, width = x.shape[-2:]
    rows = [[fn(x[:, :, i:i + tile_in, j:j + tile_in]) for j in range(0, width, stride)]
            for i in range(0, height, stride)]
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            if i > 0:
                blend_into(rows[i - 1][j], tile, blend, dim=2)
            if j > 0:
                blend_into(row[j - 1], tile, blend, dim=3)
    return torch.cat([torch.cat([t[:, :, :keep, :keep] for t in row], dim=3) for row in rows], dim=2)
