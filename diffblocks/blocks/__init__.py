"""Blocks: the typed units of a diffusion graph, and the port types they speak.

Declare a block with ``@block`` on a function (its signature is the declaration) or by
subclassing ``Block``; see docs/blocks.md.
"""

from .base import Block, Result
from .context import RunContext
from .errors import GraphError, InputError, Problem
from .function import FunctionBlock, block
from .ports import MISSING, ComponentRef, Input, Output, Outputs, Port
from .types import (
    Generator,
    ImageLatents,
    Images,
    LatentIds,
    Latents,
    Mask,
    Noise,
    NoisePred,
    PooledEmbeds,
    PromptEmbeds,
    PromptMask,
    Seed,
    SemanticTensor,
    SemanticType,
    Sigmas,
    TextIds,
    TimeIds,
    Timestep,
    Timesteps,
    is_compatible,
    type_name,
)

__all__ = [
    "Block", "FunctionBlock", "block", "Result", "RunContext", "GraphError", "InputError", "Problem",
    "MISSING", "ComponentRef", "Input", "Output", "Outputs", "Port",
    "SemanticType", "SemanticTensor", "Latents", "ImageLatents", "Noise", "PromptEmbeds",
    "PooledEmbeds", "PromptMask", "TextIds", "LatentIds", "TimeIds", "Timesteps", "Timestep",
    "Sigmas", "NoisePred", "Images", "Mask", "Generator", "Seed", "is_compatible", "type_name",
]
