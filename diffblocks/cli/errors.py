"""User mistakes on the command line: one line (plus a hint) and exit status 2, never a traceback.

The Python API raises one documented exception type per kind of mistake (see docs/usage.md,
"Errors"); this table is how the CLI recognises them. A type is named by module and class so
that ``diffblocks --help`` imports none of them (most modules import torch).
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["CliError", "USER_ERRORS", "describe", "report"]


class CliError(Exception):
    """A mistake in the command line itself (a flag, a file it names); ``hint`` says the fix."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


#: (module, class, hint): exception types that mean "the user asked for something wrong".
USER_ERRORS: tuple[tuple[str, str, str | None], ...] = (
    ("diffblocks.cli.errors", "CliError", None),
    ("diffblocks.blocks.errors", "InputError", "see `diffblocks run --help` for the inputs and their ranges"),
    ("diffblocks.blocks.errors", "GraphError", "`diffblocks validate FILE` lists every problem of a graph file"),
    ("diffblocks.registry.trust", "UntrustedCodeError", "read that code first; the Python API takes trust_remote_code=True"),
    ("diffblocks.hub", "HubError", "pass a local model folder with --model, or check the repo id and network"),
    ("diffblocks.components.spec", "ComponentError", "--model takes a diffusers model folder (with model_index.json) or a Hub repo id"),
    ("diffblocks.registry.components", "ComponentTypeError", None),
    ("diffblocks.models.modeling", "ModelLoadError", None),
    ("diffblocks.schedulers.base", "SchedulerConfigError", None),
    ("diffblocks.fileio", "FileReadError", None),
    ("diffblocks.fileio", "FileWriteError", None),
    ("diffblocks.graph.steps", "RunError", None),
)


def _loaded_class(module: str, name: str) -> type | None:
    # Only modules already imported can have raised the exception: never import one here.
    mod = sys.modules.get(module)
    return getattr(mod, name, None) if mod is not None else None


def describe(exc: BaseException) -> tuple[str, str | None] | None:
    """``(one-line message, hint)`` when ``exc`` is a user mistake, else ``None``."""
    for module, name, hint in USER_ERRORS:
        cls = _loaded_class(module, name)
        if cls is not None and isinstance(exc, cls):
            return _one_line(exc), getattr(exc, "hint", None) or hint
    return None


def _one_line(exc: BaseException) -> str:
    problems = getattr(exc, "problems", None)
    if problems and type(exc).__name__ != "InputError" or (problems and len(problems) > 1):
        # A graph with many problems: the first one, and how many more (validate lists them all).
        text = f"{exc.title}: {problems[0]}"  # type: ignore[attr-defined]
        if len(problems) > 1:
            text += f" (and {len(problems) - 1} more)"
    else:
        text = str(exc)
    return " ".join(line.strip() for line in text.splitlines() if line.strip()) or type(exc).__name__


def report(exc: BaseException, stream: Any = None) -> int | None:
    """Print ``exc`` as ``error: ...`` (and ``hint: ...``) and return 2, or ``None`` if it is a bug."""
    described = describe(exc)
    if described is None:
        return None
    message, hint = described
    stream = stream or sys.stderr
    print(f"error: {message}", file=stream)
    if hint:
        print(f"hint: {hint}", file=stream)
    return 2

