"""``diffblocks pull REPO_ID [--revision R] [--out DIR]``: download a graph repo at one commit.

Nothing is imported or run: the files are copied, and a graph with a ``code`` list is named
with the files to read before running it with ``--trust-remote-code``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any


__all__ = ["register", "cmd_pull", "pull_repo"]


def register(sub: Any) -> None:
    p = sub.add_parser("pull", help="download a graph repo at one commit into a folder")
    p.add_argument("repo_id", metavar="REPO_ID")
    p.add_argument("--revision", default=None, help="branch, tag or commit (default main)")
    p.add_argument("--out", default=None, help="folder to write (default: the repo's name); replaced whole")
    p.add_argument("--token", default=None)
    p.set_defaults(func=cmd_pull)


def pull_repo(repo_id: str, out: str | Path, *, revision: str | None = None, token: str | None = None) -> tuple[Path, str]:
    """Copy every file of graph repo ``repo_id`` at ``revision`` (resolved to one commit) into
    ``out``; returns (folder, commit). Refuses a repo without ``graph.json``."""
    from ..fileio import atomic_folder, read_text_bounded
    from ..graph.repo_code import check_code_paths, parse_document
    from ..hub import list_repo_files_pinned, resolve_commit, snapshot_download_pinned
    from ..sharing import GRAPH_FILE, GraphRepoError

    commit = resolve_commit(repo_id, revision=revision, token=token)
    files = list_repo_files_pinned(repo_id, commit, token=token)
    if files is not None and GRAPH_FILE not in files:
        raise GraphRepoError(f"repo '{repo_id}' at commit {commit} holds no {GRAPH_FILE}, so it is not a "
                             f"diffblocks graph repo (its files: {sorted(files)[:20]})")
    snapshot = snapshot_download_pinned(repo_id, revision=commit, token=token)
    document = parse_document(read_text_bounded(snapshot / GRAPH_FILE, what="graph file"))
    if document is not None and document.code:
        # Snapshot files are links into the cache's blob folder, two levels up.
        check_code_paths(document.code, snapshot, files, links_within=snapshot.parent.parent)
    with atomic_folder(out) as work:
        for path in sorted(snapshot.rglob("*")):
            if path.is_file():
                dest = work / path.relative_to(snapshot)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)  # follows the cache's links to blobs
    return Path(out), commit


def cmd_pull(args: argparse.Namespace) -> int:
    from ..fileio import FileReadError, read_text_bounded
    from ..graph.repo_code import parse_document
    from ..hub import HubError
    from ..sharing import GRAPH_FILE, GraphRepoError

    out = Path(args.out) if args.out else Path(args.repo_id.rstrip("/").split("/")[-1])
    try:
        folder, commit = pull_repo(args.repo_id, out, revision=args.revision, token=args.token)
        document = parse_document(read_text_bounded(folder / GRAPH_FILE, what="graph file"))
    except (GraphRepoError, HubError, FileReadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"pulled {args.repo_id} at commit {commit} into {folder}")
    if document is not None and document.code:
        print(f"note: this graph registers its own blocks from {list(document.code)}; read them before "
              "running it with --trust-remote-code", file=sys.stderr)
    return 0
