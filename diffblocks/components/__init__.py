"""Components: specs, index files, loading and the ComponentsManager."""

from diffblocks.components.index import (
    CLASSIC_INDEX,
    MODULAR_INDEX,
    IndexFile,
    IndexFileError,
    find_index,
    parse_index,
    read_index,
    read_model_index,
    read_modular_index,
    write_modular_index,
)
from diffblocks.components.loading import LoadOptions, load_component
from diffblocks.components.manager import ComponentProvider, ComponentRow, ComponentsManager, clear_shared_components
from diffblocks.components.offload import ModelOffloader
from diffblocks.components.spec import ComponentError, ComponentSpec

__all__ = [
    "CLASSIC_INDEX",
    "MODULAR_INDEX",
    "ComponentError",
    "ComponentProvider",
    "ComponentRow",
    "ComponentSpec",
    "ComponentsManager",
    "IndexFile",
    "IndexFileError",
    "LoadOptions",
    "ModelOffloader",
    "clear_shared_components",
    "find_index",
    "load_component",
    "parse_index",
    "read_index",
    "read_model_index",
    "read_modular_index",
    "write_modular_index",
]
