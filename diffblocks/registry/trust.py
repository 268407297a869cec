"""The trust policy for code that does not ship with diffblocks.

Every import of a module that is *not* on the built-in allow-list (our own models and
schedulers, the allow-listed transformers classes, registered plugins) goes through
:func:`import_untrusted` or :func:`load_class_from_file`. Those two functions are the
only places such code is imported, so the ``trust_remote_code`` check cannot be bypassed
by a new caller forgetting it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

__all__ = ["UntrustedCodeError", "import_untrusted", "load_class_from_file", "load_module_from_file", "refuse_repo_code"]


class UntrustedCodeError(PermissionError):
    """Raised when code outside the allow-list would be imported without ``trust_remote_code=True``."""


def _refuse(what: str, component: str | None) -> UntrustedCodeError:
    who = f"component '{component}': " if component else ""
    return UntrustedCodeError(
        f"{who}{what} is not a built-in or registered component class, so loading it would run "
        "code that diffblocks does not ship. Read that code first; then pass "
        "trust_remote_code=True, or register the class with "
        "diffblocks.registry.components.register_component_class(library, name, cls)."
    )


def import_untrusted(
    module: str, attr: str, *, trust_remote_code: bool, component: str | None = None
) -> Any:
    """Import ``module`` and return its attribute ``attr``, only when the caller trusts it.

    The check happens *before* the import, because importing a module already runs its code.
    """
    if not trust_remote_code:
        raise _refuse(f"'{module}.{attr}'", component)
    try:
        mod = importlib.import_module(module)
    except ImportError as err:
        who = f"component '{component}': " if component else ""
        raise ImportError(f"{who}cannot import module '{module}' for class '{attr}': {err}") from err
    try:
        return getattr(mod, attr)
    except AttributeError as err:
        raise ImportError(f"module '{module}' has no attribute '{attr}'") from err


def load_class_from_file(
    path: str | Path, class_name: str, *, trust_remote_code: bool, component: str | None = None
) -> type:
    """Import a Python file shipped inside a model repository and return ``class_name`` from it.

    The module is registered under a name derived from the file's content hash, so two repos
    with a ``pipeline.py`` each never shadow one another.
    """
    path = Path(path)
    if not trust_remote_code:
        raise _refuse(f"'{class_name}' from the repository file '{path}'", component)
    if not path.is_file():
        raise FileNotFoundError(f"component '{component}': remote code file '{path}' does not exist")
    module = load_module_from_file(path, trust_remote_code=True, refusal=str(path))
    try:
        cls = getattr(module, class_name)
    except AttributeError as err:
        raise ImportError(f"'{path}' defines no class '{class_name}'") from err
    if not isinstance(cls, type):
        raise TypeError(f"'{class_name}' in '{path}' is not a class")
    return cls


def load_module_from_file(path: str | Path, *, trust_remote_code: bool, refusal: str) -> Any:
    """Import one Python file (e.g. a graph repo's block definitions) and return the module.

    Without ``trust_remote_code`` this raises :class:`UntrustedCodeError` with ``refusal`` as its
    message before the file is even read. The module is named after the file's content hash, so
    two repos' ``blocks.py`` never shadow one another and importing the same bytes twice runs
    them once.
    """
    path = Path(path)
    if not trust_remote_code:
        raise UntrustedCodeError(refusal)
    if not path.is_file():
        raise FileNotFoundError(f"remote code file '{path}' does not exist")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    mod_name = f"diffblocks_remote_{path.stem}_{digest}"
    module = sys.modules.get(mod_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import '{path}' as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[mod_name]
            raise
    return module


# transformers reads ``auto_map`` from these files to import classes from the repo itself.
_REPO_CODE_CONFIGS = ("*config*.json",)
_MAX_CONFIG_BYTES = 16 * 1024 * 1024


def refuse_repo_code(folder: str | Path, *, trust_remote_code: bool, component: str | None = None) -> None:
    """Raise before a third-party loader sees a folder whose config asks to run code from it.

    transformers honours an ``auto_map`` entry in ``config.json`` / ``tokenizer_config.json``
    (and the other ``*config*.json`` files it reads) by importing a ``.py`` file from the
    folder, and *asks on stdin* when it is not told whether to trust it. We decide first, so
    nothing is ever prompted and nothing is imported without ``trust_remote_code=True``.
    """
    if trust_remote_code:
        return
    import json

    root = Path(folder)
    if not root.is_dir():
        return
    for pattern in _REPO_CODE_CONFIGS:
        for path in sorted(root.glob(pattern)):
            if not path.is_file() or path.stat().st_size > _MAX_CONFIG_BYTES:
                continue
            try:
                with open(path, "rb") as handle:
                    document = json.loads(handle.read(_MAX_CONFIG_BYTES))
            except (OSError, ValueError, RecursionError):
                continue  # not ours to judge here; the loader reports a broken file
            if isinstance(document, dict) and document.get("auto_map"):
                targets = document["auto_map"]
                shown = sorted(map(str, targets.values()))[:4] if isinstance(targets, dict) else [str(targets)[:80]]
                raise _refuse(f"the 'auto_map' in '{path}' (code {shown} from that folder)", component)
