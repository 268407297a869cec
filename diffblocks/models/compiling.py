"""Regional ``torch.compile``: compile the blocks a denoiser repeats, not the whole model.

A Flux transformer is 19 + 38 copies of two block classes and a UNet a few dozen resnets and
transformer blocks; compiling each *instance* in place (``nn.Module.compile``) lets dynamo trace
one graph per block class and shape and reuse it for every instance (parameters are graph inputs),
so the cold compile costs a few blocks, not the whole model, and a new seed, prompt or guidance
value with the same shapes never recompiles. A model lists the classes in ``repeated_blocks``.

Layout and attention per device (what ``Pipeline.compile`` applies):

* CUDA: channels-last memory format for UNets and VAEs (cuDNN's fp16/bf16 convolutions are
  NHWC-native); attention is ``scaled_dot_product_attention`` everywhere, which picks flash /
  memory-efficient kernels by itself.
* CPU: the layout the components loader chose is kept (fp32 conv weights channels-last:
  `diffblocks.models.kernels.use_cpu_kernels`; activations in NHWC with NCHW weights would make
  oneDNN reorder the weights on every call) and SDPA's fused CPU kernel inside compiled regions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["DENOISERS", "compile_regions", "compile_components", "prefers_channels_last"]

#: The component names ``compile_components`` compiles by default: the denoiser, where the time goes.
DENOISERS = ("unet", "transformer")


def compile_regions(model: nn.Module, mode: str | None = None, *, dynamic: bool | None = None,
                    fullgraph: bool = False, classes: tuple[type[nn.Module], ...] | None = None) -> int:
    """Compile every instance of ``model``'s repeated block classes in place; returns how many.

    ``classes`` defaults to ``model.repeated_blocks``; ``mode`` is ``torch.compile``'s
    (``None``, ``"reduce-overhead"``, ``"max-autotune"``...). ``ValueError`` when the model
    declares no repeated blocks.
    """
    classes = classes if classes is not None else tuple(getattr(model, "repeated_blocks", ()))
    if not classes:
        raise ValueError(f"{type(model).__name__} declares no repeated_blocks to compile")
    options: dict[str, Any] = {"mode": mode, "dynamic": dynamic, "fullgraph": fullgraph}
    count = 0
    for module in model.modules():
        if isinstance(module, classes):
            module.compile(**options)
            count += 1
    return count


def prefers_channels_last(model: nn.Module, device: torch.device | str) -> bool:
    """Whether ``model`` should run in channels-last memory format on ``device`` (see above)."""
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    return has_conv and torch.device(device).type == "cuda"


def compile_components(components: Mapping[str, Any], mode: str | None = None,
                       names: Iterable[str] | None = None, *, dynamic: bool | None = None) -> dict[str, int]:
    """Regionally compile the named components (default: the denoisers present), switching them
    to channels-last where the device prefers it; returns name -> blocks compiled.

    ``KeyError`` for a name that is not a component; ``ValueError`` for one with no repeated blocks.
    """
    names = [n for n in DENOISERS if n in components] if names is None else list(names)
    compiled = {}
    for name in names:
        if name not in components:
            raise KeyError(f"compile: no component {name!r} (have: {', '.join(sorted(components))})")
        model = components[name]
        device = next(model.parameters()).device
        if prefers_channels_last(model, device):
            model.to(memory_format=torch.channels_last)
        compiled[name] = compile_regions(model, mode, dynamic=dynamic)
    return compiled
