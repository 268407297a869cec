"""Our own diffusers-compatible models (same config.json keys and state-dict names).

Model classes are imported lazily so ``import diffblocks.models`` stays cheap and one model's
module does not pull in the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diffblocks.models.autoencoder_kl import AutoencoderKL
    from diffblocks.models.controlnet import ControlNetModel
    from diffblocks.models.flux import FluxTransformer2DModel
    from diffblocks.models.modeling import Model, ModelConfig, ModelLoadError
    from diffblocks.models.multi_controlnet import MultiControlNetModel
    from diffblocks.models.t2i_adapter import T2IAdapter
    from diffblocks.models.unet_2d_condition import UNet2DConditionModel

# public name -> module that defines it; other model modules add their line here.
_LAZY: dict[str, str] = {
    "Model": "diffblocks.models.modeling",
    "ModelConfig": "diffblocks.models.modeling",
    "ModelLoadError": "diffblocks.models.modeling",
    "UNet2DConditionModel": "diffblocks.models.unet_2d_condition",
    "AutoencoderKL": "diffblocks.models.autoencoder_kl",
    "FluxTransformer2DModel": "diffblocks.models.flux",
    "ControlNetModel": "diffblocks.models.controlnet",
    "T2IAdapter": "diffblocks.models.t2i_adapter",
    "MultiControlNetModel": "diffblocks.models.multi_controlnet",
}

# The model classes a component's ("diffusers", <class>) type hint resolves to (the registry reads this).
COMPONENT_CLASSES: tuple[str, ...] = (
    "UNet2DConditionModel", "AutoencoderKL", "FluxTransformer2DModel", "ControlNetModel", "T2IAdapter",
    "MultiControlNetModel",
)

__all__ = sorted([*_LAZY, "COMPONENT_CLASSES"])


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'diffblocks.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
