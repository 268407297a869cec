"""Index files: diffusers' ``modular_model_index.json`` (read/write) and ``model_index.json`` (read).

``modular_model_index.json`` maps each component to
``[library, class, {type_hint, pretrained_model_name_or_path, subfolder, variant, revision}]``
(older files say ``repo`` instead of ``pretrained_model_name_or_path``); other keys are flat
config values, keys starting with ``_`` are metadata. A classic ``model_index.json`` maps
each component to ``[library, class]`` with its files in the subfolder of the same name;
``[null, null]`` entries (e.g. a removed safety checker) are skipped.

Everything is validated before any weight is loaded; errors name the file, the key and the fix.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffblocks.components.files import folder_holds_component, inside_problem, looks_like_repo_id
from diffblocks.components.spec import ComponentError, ComponentSpec
from diffblocks.fileio import FileReadError, atomic_write_text, read_text_bounded

__all__ = [
    "CLASSIC_INDEX",
    "IndexFile",
    "IndexFileError",
    "MODULAR_INDEX",
    "find_index",
    "parse_index",
    "read_index",
    "read_model_index",
    "read_modular_index",
    "write_modular_index",
]

MODULAR_INDEX = "modular_model_index.json"
CLASSIC_INDEX = "model_index.json"
_SPEC_KEYS = {"type_hint", "pretrained_model_name_or_path", "repo", "subfolder", "variant", "revision"}


class IndexFileError(ComponentError):
    """An index file is missing, not JSON, or has a malformed entry."""


@dataclass
class IndexFile:
    """The parsed content of an index file.

    ``specs``: component name -> spec (in file order); ``config``: flat config values;
    ``metadata``: the ``_``-prefixed keys (``_class_name``, ``_diffusers_version``, ...).
    """

    specs: dict[str, ComponentSpec] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    kind: str = "modular"  # "modular" | "classic"
    path: str | None = None

    @property
    def class_name(self) -> str | None:
        """The pipeline class written by diffusers (``_class_name``), used to pick a preset."""
        return self.metadata.get("_class_name")


def _load_json(path: Path) -> dict[str, Any]:
    try:
        text = read_text_bounded(path, what="index file")
    except FileReadError as err:
        raise IndexFileError(f"{err}; point at a pipeline folder saved with save_pretrained") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise IndexFileError(f"index file '{path}' is nested too deeply to be an index") from None
    except json.JSONDecodeError as err:
        raise IndexFileError(
            f"index file '{path}' is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
            "fix or regenerate it (save_pretrained writes it)"
        ) from None
    if not isinstance(data, dict):
        raise IndexFileError(f"index file '{path}' must hold a JSON object, got {type(data).__name__}")
    return data


def _hint(value: Any, where: str) -> tuple[str, str] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, str) and v for v in value):
        return (value[0], value[1])
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] is None and value[1] is None:
        return None
    raise IndexFileError(f"{where}: type_hint must be [library, class name], got {value!r}")


def _is_component_entry(value: Any) -> bool:
    if not isinstance(value, list):
        return False
    if len(value) == 2:
        return all(v is None or isinstance(v, str) for v in value)
    return len(value) == 3 and all(v is None or isinstance(v, str) for v in value[:2])


def _local_wins(spec: ComponentSpec, base: str | None) -> ComponentSpec:
    """A local folder that holds the component beats the Hub id written in its index."""
    if base is None or not os.path.isdir(base) or not folder_holds_component(base, spec.subfolder):
        return spec
    if spec.is_local and spec.source == str(Path(base).resolve()):
        return spec
    return spec.with_updates(pretrained_model_name_or_path=str(base), revision=None)


def _source_in(path: str, base: str | None, where: str, name: str) -> str:
    """Where a source written in an index points, kept inside what the index may name.

    A local folder's index: a relative path is relative to the index's folder and must stay
    inside it; an absolute path is the user's own reference to another folder (what
    ``save_pretrained`` writes for components it did not copy). A Hub repo's index names Hub
    repo ids only, never a path on this machine.
    """
    if base is None:
        return path
    if not os.path.isdir(base):  # read from the Hub: base is the repo id
        if not looks_like_repo_id(path):
            raise IndexFileError(
                f"{where}: '{name}' names {path!r} as its source; an index from the Hub may only name Hub "
                "repo ids (org/name), never a local path"
            )
        return path
    if os.path.isabs(path) or path.startswith("~"):
        return path
    problem = inside_problem(path)
    if problem is not None:
        raise IndexFileError(f"{where}: '{name}' source {path!r} {problem}; paths in a folder's index stay inside that folder")
    candidate = Path(base) / path
    if candidate.is_dir() or not looks_like_repo_id(path):
        return str(candidate)
    return path  # not a folder here: a Hub repo id


def _subfolder(value: str | None, where: str, name: str) -> str | None:
    problem = None if value is None else inside_problem(value)
    if problem is not None:
        raise IndexFileError(f"{where}: '{name}' subfolder {value!r} {problem}; a subfolder stays inside its model folder")
    return value


def _modular_entry(name: str, value: list, where: str, base: str | None) -> ComponentSpec | None:
    if len(value) != 3:
        raise IndexFileError(f"{where}: '{name}' must be [library, class, {{loading spec}}], got {value!r}")
    library, cls, loading = value
    if loading is None:
        loading = {}
    if not isinstance(loading, dict):
        raise IndexFileError(f"{where}: the third item of '{name}' must be an object, got {loading!r}")
    unknown = set(loading) - _SPEC_KEYS
    if unknown:
        raise IndexFileError(
            f"{where}: '{name}' has unknown loading key(s) {sorted(unknown)}; allowed: {sorted(_SPEC_KEYS)}"
        )
    for key in ("pretrained_model_name_or_path", "repo", "subfolder", "variant", "revision"):
        if loading.get(key) is not None and not isinstance(loading[key], str):
            raise IndexFileError(f"{where}: '{name}'.{key} must be a string or null, got {loading[key]!r}")
    variant = loading.get("variant")
    if variant is not None and not re.fullmatch(r"[\w.-]+", variant):
        raise IndexFileError(f"{where}: '{name}'.variant {variant!r} must be a plain tag like 'fp16'")
    if "repo" in loading and loading.get("pretrained_model_name_or_path") not in (None, loading["repo"]):
        raise IndexFileError(f"{where}: '{name}' gives both 'repo' and 'pretrained_model_name_or_path'; keep one")
    hint = _hint(loading.get("type_hint"), f"{where}: '{name}'")
    if hint is None and library is not None and cls is not None:
        hint = (library, cls)
    source = loading.get("pretrained_model_name_or_path") or loading.get("repo")
    if hint is None and source is None:
        return None  # an unset slot, as diffusers writes for components it never had
    subfolder = _subfolder(loading.get("subfolder"), where, name)
    if source is None and subfolder:
        source = base  # no source written: the component lives next to its index
    elif source is not None:
        source = _source_in(source, base, where, name)
    spec = ComponentSpec(
        name=name,
        type_hint=hint,
        pretrained_model_name_or_path=source,
        subfolder=subfolder,
        variant=loading.get("variant"),
        revision=loading.get("revision"),
    )
    return _local_wins(spec, base)


def parse_index(data: dict[str, Any], *, source: str | None = None, where: str = "index") -> IndexFile:
    """Parse an index dict (modular or classic, detected per entry).

    ``source`` is the folder or repo id the index came from: classic entries load from its
    subfolders, and a local ``source`` that holds a component wins over the index's Hub id.
    """
    out = IndexFile(path=where)
    saw_modular = False
    class_name = data.get("_class_name")
    if class_name is not None and not isinstance(class_name, str):
        raise IndexFileError(f"{where}: '_class_name' must be a string (a pipeline class name), got {class_name!r:.80}")
    for name, value in data.items():
        if name.startswith("_"):
            out.metadata[name] = value
        elif not _is_component_entry(value):
            out.config[name] = value
        elif len(value) == 3:
            saw_modular = True
            spec = _modular_entry(name, value, where, source)
            if spec is not None:
                out.specs[name] = spec
        elif value[0] is not None and value[1] is not None:
            _subfolder(name, where, name)  # a classic entry's name is its subfolder
            out.specs[name] = ComponentSpec(
                name=name, type_hint=(value[0], value[1]), pretrained_model_name_or_path=source, subfolder=name
            )
        elif value[0] is not None or value[1] is not None:
            raise IndexFileError(f"{where}: '{name}' must be [library, class] or [null, null], got {value!r}")
    out.kind = "modular" if saw_modular else "classic"
    return out


def read_modular_index(path: str | os.PathLike[str], *, source: str | None = None) -> IndexFile:
    """Read a ``modular_model_index.json`` file (``source`` defaults to the file's folder)."""
    path = Path(path)
    index = parse_index(_load_json(path), source=source or str(path.parent), where=str(path))
    index.kind = "modular"
    return index


def read_model_index(path: str | os.PathLike[str], *, source: str | None = None) -> IndexFile:
    """Read a classic ``model_index.json``: each component in the subfolder of its name."""
    path = Path(path)
    data = _load_json(path)
    bad = [k for k, v in data.items() if not k.startswith("_") and isinstance(v, list) and len(v) == 3]
    if bad:
        raise IndexFileError(f"'{path}': entries {bad} are modular entries; name the file '{MODULAR_INDEX}'")
    index = parse_index(data, source=source or str(path.parent), where=str(path))
    index.kind = "classic"
    return index


def find_index(folder: str | os.PathLike[str]) -> Path:
    """The index file of a local folder: ``modular_model_index.json`` first, else ``model_index.json``."""
    folder = Path(folder)
    for name in (MODULAR_INDEX, CLASSIC_INDEX):
        if (folder / name).is_file():
            return folder / name
    raise IndexFileError(
        f"'{folder}' holds neither {MODULAR_INDEX} nor {CLASSIC_INDEX}; point at a pipeline folder "
        "saved with save_pretrained, or give the components explicitly"
    )


def read_index(path: str | os.PathLike[str], *, source: str | None = None) -> IndexFile:
    """Read an index file, or the index of a folder (modular preferred)."""
    path = Path(path)
    if path.is_dir():
        path = find_index(path)
    reader = read_model_index if path.name == CLASSIC_INDEX else read_modular_index
    return reader(path, source=source)


def write_modular_index(
    path: str | os.PathLike[str],
    specs: dict[str, ComponentSpec] | list[ComponentSpec],
    *,
    config: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a ``modular_model_index.json`` (``path``: a folder or the file) and return its path.

    Config-only components (schedulers built from a dict) have no files to point at, so they
    are written as flat config values only when the caller puts them in ``config``.
    """
    path = Path(path)
    if path.suffix != ".json":
        path = path / MODULAR_INDEX
    items = specs.values() if isinstance(specs, dict) else specs
    data: dict[str, Any] = {"_class_name": "ModularPipeline", **(metadata or {})}
    for key, value in (config or {}).items():
        if _is_component_entry(value):
            raise IndexFileError(f"config value '{key}' = {value!r} would read back as a component entry")
        data[key] = value
    for spec in items:
        if spec.config is not None:
            continue
        library, cls = spec.type_hint if spec.type_hint else (None, None)
        data[spec.name] = [library, cls, spec.to_dict()]
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
