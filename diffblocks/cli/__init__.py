"""The ``diffblocks`` command.

Sub-commands live in their own modules, each with ``register(subparsers)`` that adds its
parser and sets ``func`` (``args -> exit code``). ``inspect`` holds validate / show / presets /
schema; ``run`` (added by its own module) plugs in the same way.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..blocks.errors import GraphError

__all__ = ["main", "build_parser", "SUBCOMMAND_MODULES"]

#: Modules that contribute sub-commands; a missing one is skipped.
SUBCOMMAND_MODULES = (
    "diffblocks.cli.inspect",
    "diffblocks.cli.run",
    "diffblocks.cli.push",
    "diffblocks.cli.pull",
    "diffblocks.cli.batch",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffblocks", description="Diffusion pipelines as typed, validated block graphs.")
    from .. import __version__

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
    """Entry point: returns the exit code (0 ok, 1 invalid graph / failure, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except GraphError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
