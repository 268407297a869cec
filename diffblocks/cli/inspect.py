"""``diffblocks validate | show | presets | schema``: look at graphs without running them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .errors import CliError

# The graph machinery imports torch: it is imported inside the commands, so that building the
# parser (``diffblocks --help``) stays instant.

__all__ = ["register", "resolve_graph_path", "load_target", "read_graph_file", "graph_from_text"]

FORMATS = ("text", "mermaid", "dot", "json")


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="check graph files; exit 1 listing every problem")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("show", help="print a graph file or preset as text, mermaid, dot or json")
    p.add_argument("target", metavar="FILE_OR_PRESET")
    p.add_argument("--format", "-f", choices=FORMATS, default="text")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("presets", help="list the preset graphs")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("schema", help="print (or write) the JSON Schema of graph files")
    p.add_argument("--output", "-o", type=Path, default=None)
    p.set_defaults(func=cmd_schema)


def graph_from_text(text: str, source: str) -> Any:
    """The graph in JSON ``text``; text that is not a JSON object is refused, never taken for a path."""
    from ..graph.graph import Graph

    if not text.lstrip().startswith("{"):
        raise CliError(f"{source} is not a graph: graph JSON starts with '{{'")
    return Graph.from_json(text)


def read_graph_file(path: str | Path) -> Any:
    """The graph in file ``path``: a bounded read of a regular file (not a FIFO or device)."""
    from ..fileio import read_text_bounded
    from ..graph.jsonio import LIMITS

    text = read_text_bounded(path, LIMITS["max_file_bytes"], what="graph file")
    return graph_from_text(text, f"graph file '{path}'")


def resolve_graph_path(target: str) -> Path | None:
    """A path if ``target`` is an existing file or looks like one; ``None`` for a preset name."""
    path = Path(target)
    if path.exists() or target.endswith(".json") or "/" in target or "\\" in target:
        return path
    return None


def load_target(target: str) -> Any:
    """The graph in file ``target``, or the preset called ``target``."""
    from .. import presets

    path = resolve_graph_path(target)
    if path is not None:
        return read_graph_file(path)
    return presets.load_preset(target)  # GraphError with suggestions for an unknown name


def cmd_validate(args: argparse.Namespace) -> int:
    from ..blocks.errors import GraphError
    from ..fileio import FileReadError

    status = 0
    for name in args.files:
        try:
            graph = read_graph_file(name)
        except (GraphError, FileReadError, CliError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{name}: ok ({len(graph.nodes)} nodes, {len(graph.edges)} edges)")
    return status


def cmd_show(args: argparse.Namespace) -> int:
    graph = load_target(args.target)
    if args.format == "mermaid":
        sys.stdout.write(graph.to_mermaid())
    elif args.format == "dot":
        sys.stdout.write(graph.to_dot())
    elif args.format == "json":
        sys.stdout.write(graph.to_json() + "\n")
    else:
        sys.stdout.write(graph.summary())
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from .. import presets

    names = list(presets.list_presets())
    if not names:
        print("no presets found")
        return 0
    width = max(len(n) for n in names)
    for name in names:
        print(f"{name:<{width}}  {_about(name)}")
    return 0


def _about(name: str) -> str:
    """A preset's one-line description: its file's, or for ``<preset>-<workflow>`` a sentence."""
    from .. import presets

    path = presets.preset_file(name)
    if path.stem == name:
        return _description(path)
    family, _, workflow = name.rpartition("-")
    return f"{family} with the {workflow} workflow selected"


def _description(path: Path) -> str:
    """The preset's description, read without building the graph (listing must not fail)."""
    try:
        from ..fileio import read_text_bounded

        doc = json.loads(read_text_bounded(path, what="preset file"))
        graph = doc.get("graph", {}) if isinstance(doc, dict) else {}
        text = graph.get("description") or graph.get("name") or ""
        return str(text).splitlines()[0][:100] if text else str(path)
    except (OSError, ValueError, AttributeError):  # FileReadError is an OSError
        return f"(unreadable: {path})"


def cmd_schema(args: argparse.Namespace) -> int:
    from ..graph.jsonio import graph_json_schema, write_schema

    if args.output:
        write_schema(args.output)
        print(f"wrote {args.output}")
    else:
        print(json.dumps(graph_json_schema(), indent=2, sort_keys=True))
    return 0
