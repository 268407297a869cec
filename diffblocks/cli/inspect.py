"""``diffblocks validate | show | presets | schema``: look at graphs without running them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..blocks.errors import GraphError
from ..graph.graph import Graph
from .. import presets

__all__ = ["register", "resolve_graph_path", "load_target"]

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


def resolve_graph_path(target: str) -> Path | None:
    """A path if ``target`` is an existing file or looks like one; ``None`` for a preset name."""
    path = Path(target)
    if path.exists() or target.endswith(".json") or "/" in target or "\\" in target:
        return path
    return None


def load_target(target: str) -> Graph:
    """The graph in file ``target``, or the preset called ``target``."""
    path = resolve_graph_path(target)
    if path is not None:
        return Graph.from_json(path)
    return presets.load_preset(target)  # GraphError with suggestions for an unknown name


def cmd_validate(args: argparse.Namespace) -> int:
    status = 0
    for name in args.files:
        try:
            graph = Graph.from_json(Path(name))
        except GraphError as exc:
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
    names = presets.list_presets()
    if not names:
        print("no presets found")
        return 0
    width = max(len(n) for n in names)
    for name in names:
        print(f"{name:<{width}}  {_about(name)}")
    return 0


def _about(name: str) -> str:
    """A preset's one-line description: its file's, or for ``<preset>-<workflow>`` a sentence."""
    path = presets.preset_file(name)
    if path.stem == name:
        return _description(path)
    family, _, workflow = name.rpartition("-")
    return f"{family} with the {workflow} workflow selected"


def _description(path: Path) -> str:
    """The preset's description, read without building the graph (listing must not fail)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        graph = doc.get("graph", {}) if isinstance(doc, dict) else {}
        text = graph.get("description") or graph.get("name") or ""
        return str(text).splitlines()[0][:100] if text else str(path)
    except (OSError, ValueError, AttributeError):
        return f"(unreadable: {path})"


def cmd_schema(args: argparse.Namespace) -> int:
    from ..graph.jsonio import graph_json_schema, write_schema

    if args.output:
        write_schema(args.output)
        print(f"wrote {args.output}")
    else:
        print(json.dumps(graph_json_schema(), indent=2, sort_keys=True))
    return 0
