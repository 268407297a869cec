"""``diffblocks push GRAPH.json|FOLDER REPO_ID``: share a graph as a Hub repo, in one commit.

The graph is loaded and validated first (its ``code`` files imported only with
``--trust-remote-code``: they are needed to know the blocks), so an invalid graph creates
nothing on the Hub. A folder's ``modular_model_index.json`` travels with it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


__all__ = ["register", "cmd_push"]


def register(sub: Any) -> None:
    p = sub.add_parser("push", help="upload a graph (file or folder) to a Hub repo as one commit")
    p.add_argument("graph", metavar="GRAPH.json|FOLDER", help="graph file, or a folder holding graph.json")
    p.add_argument("repo_id", metavar="REPO_ID", help="Hub repo, e.g. user/my-graph (created when missing)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--branch", default=None, help="branch to commit to (created from main when missing)")
    p.add_argument("--message", default=None, help="commit message")
    p.add_argument("--token", default=None, help="Hub token (default: the one huggingface_hub has stored)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="import the graph's own code files (needed to validate a graph with custom blocks)")
    p.set_defaults(func=cmd_push)


def cmd_push(args: argparse.Namespace) -> int:
    # Imported here: they import torch, and building the parser must not.
    from ..components import MODULAR_INDEX
    from ..components.index import IndexFileError, read_modular_index
    from ..fileio import FileReadError, read_bytes_bounded
    from ..hub import HubError
    from ..registry.trust import UntrustedCodeError
    from ..sharing import CARD_FILE, GRAPH_FILE, GraphRepoError, load_graph_file, model_card, push_graph

    target = Path(args.graph).expanduser()
    path = target / GRAPH_FILE if target.is_dir() else target
    try:
        graph = load_graph_file(path, trust_remote_code=args.trust_remote_code)
        extra: dict[str, bytes] = {}
        index = path.parent / MODULAR_INDEX
        if index.is_file():
            extra[MODULAR_INDEX] = read_bytes_bounded(index, what="index file")
            specs = read_modular_index(index, source=args.repo_id).specs
            extra[CARD_FILE] = model_card(graph, args.repo_id, specs=specs, pipeline=True).encode()
        sha = push_graph(graph, args.repo_id, commit_message=args.message, private=args.private or None,
                         token=args.token, branch=args.branch, extra_files=extra)
    except (GraphRepoError, HubError, UntrustedCodeError, FileReadError, IndexFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"pushed {path} to {args.repo_id} (branch {args.branch or 'main'}) at commit {sha}")
    return 0
