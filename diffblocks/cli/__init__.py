"""The ``diffblocks`` command.

Sub-commands live in their own modules, each with ``register(subparsers)`` that adds its
parser and sets ``func`` (``args -> exit code``). ``inspect`` holds validate / show / presets /
schema; ``run`` (added by its own module) plugs in the same way.

Building the parser imports no torch: ``diffblocks --help`` and ``--version`` answer at once,
and a command imports what it needs when it runs.

Exit status: 0 done, 1 a checked graph is invalid (``validate``), 2 a user mistake (a bad
flag, input, file, model folder, graph or untrusted code: one ``error:`` line and maybe a
``hint:`` line, no traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from .errors import CliError, report

__all__ = ["main", "build_parser", "SUBCOMMAND_MODULES", "CliError"]

#: Modules that contribute sub-commands; a missing one is skipped.
SUBCOMMAND_MODULES = (
    "diffblocks.cli.inspect",
    "diffblocks.cli.run",
    "diffblocks.cli.push",
    "diffblocks.cli.pull",
    "diffblocks.cli.batch",
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one ``error:`` line and a hint, like every other mistake."""

    def error(self, message: str) -> Any:
        print(f"error: {self.prog}: {message}", file=sys.stderr)
        print(f"hint: `{self.prog} --help` lists the flags", file=sys.stderr)
        raise SystemExit(2)


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    print(f"warning: {message}", file=file or sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(prog="diffblocks", description="Diffusion pipelines as typed, validated block graphs.")
    parser.add_argument("--version", action="version", version=f"diffblocks {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit code (0 ok, 1 invalid graph, 2 user mistake, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning  # one readable line, not a source excerpt
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        status = report(exc)
        if status is None:
            raise
        return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
