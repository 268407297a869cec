"""diffblocks: diffusion pipelines built from typed blocks wired into validated graphs.

The main entry points, imported lazily so ``import diffblocks`` stays cheap::

    from diffblocks import Pipeline, Graph, Loop, Switch, block
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Pipeline": "diffblocks.pipeline",
    "PipelineOutput": "diffblocks.pipeline",
    "Graph": "diffblocks.graph",
    "Loop": "diffblocks.graph",
    "Switch": "diffblocks.graph",
    "GraphError": "diffblocks.graph",
    "InputError": "diffblocks.blocks",
    "block": "diffblocks.blocks",
    "Block": "diffblocks.blocks",
    "ComponentsManager": "diffblocks.components",
    "ComponentSpec": "diffblocks.components",
    "load_preset": "diffblocks.presets",
    "list_presets": "diffblocks.presets",
    "load": "diffblocks.loader",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'diffblocks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
