"""Gaussian noise drawn the way diffusers draws it, shared by the schedulers (ancestral and SDE
steps), the VAE posterior and the latent blocks, so that the same seed gives the same numbers."""

from __future__ import annotations

import torch

__all__ = ["randn_tensor"]


def randn_tensor(
    shape: tuple[int, ...],
    generator: torch.Generator | list[torch.Generator] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Gaussian noise drawn the way diffusers draws it, so seeded runs agree: a CPU generator draws on
    the CPU and the result moves to `device`; a list of generators draws one batch element each."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    gens = generator if isinstance(generator, list) else [generator]
    rand_device = device
    if gens[0] is not None and gens[0].device.type != device.type:
        if gens[0].device.type != "cpu":
            raise ValueError(f"cannot draw a {device} tensor from a {gens[0].device.type} generator")
        rand_device = torch.device("cpu")
    if isinstance(generator, list) and len(generator) > 1:
        one = (1, *shape[1:])
        noise = torch.cat([torch.randn(one, generator=g, device=rand_device, dtype=dtype) for g in generator[: shape[0]]])
    else:
        noise = torch.randn(shape, generator=gens[0], device=rand_device, dtype=dtype)
    return noise.to(device)
