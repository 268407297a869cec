"""Adapters attached to components: LoRA (over peft) and textual-inversion embeddings.

See :mod:`diffblocks.adapters.api` for the methods on ComponentsManager and Pipeline.
"""

from diffblocks.adapters.files import AdapterFileError
from diffblocks.adapters.weights import LoraError, LoraFormatError, LoraWeights

__all__ = ["AdapterFileError", "LoraError", "LoraFormatError", "LoraWeights"]
