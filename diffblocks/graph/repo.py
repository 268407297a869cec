"""Graphs as repos: save to a folder, load from a folder or a Hub repo, push as one commit.

A graph repo holds ``graph.json``, a generated ``README.md`` model card, the Python files its
``code`` list names (custom blocks), and optionally a ``modular_model_index.json`` naming the
components (see :mod:`diffblocks.sharing.pipelines`). Everything read from the Hub is pinned
to one commit, resolved first; :func:`graph_origin` tells where a loaded graph came from.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..blocks.errors import GraphError
from ..fileio import atomic_write_bytes, read_bytes_bounded, read_text_bounded
from .jsonio import LIMITS, load_graph
from ..hub import HubError, list_repo_files_pinned, resolve_commit, snapshot_download_pinned, upload_files
from ..registry.trust import UntrustedCodeError
from .card import model_card
from .repo_code import check_code_paths, import_graph_code, parse_document, refusal_message, unknown_block_error

if TYPE_CHECKING:
    from .graph import Graph

__all__ = [
    "CARD_FILE",
    "GRAPH_FILE",
    "GraphOrigin",
    "GraphRepoError",
    "graph_files",
    "graph_from_pretrained",
    "graph_origin",
    "load_graph_file",
    "push_graph",
    "save_graph",
]

GRAPH_FILE = "graph.json"
CARD_FILE = "README.md"


class GraphRepoError(ValueError):
    """A folder or repo that should hold a graph does not (or cannot be shared); the message says why."""


@dataclass(frozen=True)
class GraphOrigin:
    """Where a loaded graph came from: a Hub ``repo`` at ``commit``, or a local folder
    (``repo`` and ``commit`` None). ``folder`` holds its ``graph.json`` and code files."""

    folder: Path
    repo: str | None = None
    commit: str | None = None
    links_within: Path | None = None  # a Hub cache snapshot's files link into its blob folder


_ORIGINS: "weakref.WeakKeyDictionary[Graph, GraphOrigin]" = weakref.WeakKeyDictionary()


def graph_origin(graph: Graph) -> GraphOrigin | None:
    """The origin recorded when ``graph`` was loaded by this module (None otherwise)."""
    return _ORIGINS.get(graph)


def load_graph_file(
    path: str | os.PathLike[str],
    *,
    trust_remote_code: bool = False,
    root: str | os.PathLike[str] | None = None,
    source: str | None = None,
    links_within: Path | None = None,
    other_files: Sequence[str] | None = None,
) -> Graph:
    """Read a graph file whose ``code`` paths are relative to ``root`` (default: its folder).

    The code files are imported (only with ``trust_remote_code=True``) before the graph is
    built, so the blocks they register resolve; a block still unknown afterwards is reported
    with where it might come from (``other_files``: the repo's file list, for hints).
    """
    path = Path(path)
    folder = Path(root) if root is not None else path.parent
    where = source or f"folder '{folder}'"
    text = read_text_bounded(path, LIMITS["max_file_bytes"], what="graph file")
    document = parse_document(text)
    if document is not None:
        import_graph_code(document, folder, trust_remote_code=trust_remote_code, source=where, links_within=links_within)
    try:
        graph = load_graph(path)  # the code is imported; import paths in block names stay refused
    except GraphError as err:
        hints = unknown_block_error(document, folder, where, other_files) if document is not None else None
        if hints is None:
            raise
        # Every problem at once: the file's own, with each unknown block explained.
        named = {p.message for p in err.problems if p.kind == "unknown_block" and "no block registered" in p.message}
        kept = [p for p in err.problems if p.message not in named]
        raise GraphError(hints.problems + kept, title=err.title) from None
    _ORIGINS[graph] = GraphOrigin(folder.resolve())
    return graph


def graph_from_pretrained(
    repo_id_or_dir: str | os.PathLike[str],
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    token: str | bool | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
) -> Graph:
    """Load the graph of a local folder (or graph file) or of a Hub repo at one commit.

    For a repo, ``revision`` (branch, tag or sha; default ``main``) is resolved to a commit
    first; ``graph.json`` and then, only with ``trust_remote_code=True``, the code files are
    downloaded at that commit, so a push during the download cannot mix two versions.
    """
    local = Path(repo_id_or_dir).expanduser()
    if local.is_file():
        return load_graph_file(local, trust_remote_code=trust_remote_code)
    if local.is_dir():
        if not (local / GRAPH_FILE).is_file():
            present = sorted(p.name for p in local.iterdir())[:20]
            raise GraphRepoError(f"folder '{local}' holds no {GRAPH_FILE} (it has {present}); "
                                 "save one with graph.save_pretrained(folder)")
        return load_graph_file(local / GRAPH_FILE, trust_remote_code=trust_remote_code)
    repo = os.fspath(repo_id_or_dir)
    commit = resolve_commit(repo, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
    return _hub_graph(repo, commit, trust_remote_code=trust_remote_code, cache_dir=cache_dir,
                      local_files_only=local_files_only, token=token)


def _hub_graph(repo: str, commit: str, *, trust_remote_code: bool, **hub: Any) -> Graph:
    """``hub``: cache_dir, local_files_only, token (as for :func:`diffblocks.hub.resolve_commit`)."""
    source = f"repo '{repo}' at commit {commit}"
    files = list_repo_files_pinned(repo, commit, **hub)
    if files is not None and GRAPH_FILE not in files:
        shown = sorted(files)[:20]
        raise GraphRepoError(
            f"{source} holds no {GRAPH_FILE}, so it is not a diffblocks graph repo (its files: {shown}). "
            "For a model repo, use Pipeline.from_pretrained(repo), which picks a preset from its index."
        )
    folder = snapshot_download_pinned(repo, revision=commit, allow_patterns=[GRAPH_FILE], **hub)
    document = parse_document(read_text_bounded(folder / GRAPH_FILE, LIMITS["max_file_bytes"], what="graph file"))
    if document is not None and document.code:
        # Checked against the listing and refused *before* any code file is downloaded.
        check_code_paths(document.code, None, listing=files)
        if not trust_remote_code:
            raise UntrustedCodeError(refusal_message(document, source))
        folder = snapshot_download_pinned(repo, revision=commit, allow_patterns=[GRAPH_FILE, *document.code], **hub)
    # The cache's snapshot files are links into the repo's blob folder: .../models--org--name/blobs.
    graph = load_graph_file(folder / GRAPH_FILE, trust_remote_code=trust_remote_code, root=folder, source=source,
                            links_within=folder.parent.parent, other_files=files)
    _ORIGINS[graph] = GraphOrigin(folder, repo, commit, folder.parent.parent)
    return graph


def repo_graph(repo: str, commit: str, *, trust_remote_code: bool, **hub: Any) -> Graph | None:
    """The graph of Hub ``repo`` at ``commit``, or None when the repo holds no ``graph.json``."""
    files = list_repo_files_pinned(repo, commit, **hub)
    if files is not None:
        return _hub_graph(repo, commit, trust_remote_code=trust_remote_code, **hub) if GRAPH_FILE in files else None
    try:  # offline and never listed: a graph.json in the cache is the answer
        return _hub_graph(repo, commit, trust_remote_code=trust_remote_code, **hub)
    except HubError:
        return None


def _code_files(graph: Graph, code_root: str | os.PathLike[str] | None) -> dict[str, bytes]:
    if not graph.code:
        return {}
    origin = graph_origin(graph)
    root = Path(code_root) if code_root is not None else (origin.folder if origin else None)
    links = origin.links_within if origin is not None and code_root is None else None
    if root is None:
        raise GraphRepoError(
            f"graph {graph.name!r} names code files {graph.code} but was not loaded from a folder or repo; "
            "pass code_root= (the folder they are relative to)"
        )
    check_code_paths(graph.code, root, links_within=links)
    return {p: read_bytes_bounded(root / p, what="code file") for p in graph.code}


def graph_files(
    graph: Graph,
    repo_id: str,
    *,
    code_root: str | os.PathLike[str] | None = None,
    card: str | None = None,
) -> dict[str, bytes]:
    """What a graph repo holds, in memory: ``graph.json``, ``README.md`` and the code files.

    The graph is validated first (one ``GraphError`` listing every problem): nothing invalid
    is ever written or uploaded.
    """
    problems = graph.problems()
    if problems:
        raise GraphError(problems, title=f"graph {graph.name!r} is invalid and cannot be shared")
    files = {GRAPH_FILE: (graph.to_json() + "\n").encode()}
    files.update(_code_files(graph, code_root))
    files[CARD_FILE] = (card if card is not None else model_card(graph, repo_id)).encode()
    return files


def save_graph(graph: Graph, save_directory: str | os.PathLike[str], *, code_root: str | os.PathLike[str] | None = None) -> Path:
    """Write ``graph.json``, the model card and the code files into ``save_directory``."""
    out = Path(save_directory)
    files = graph_files(graph, os.fspath(save_directory), code_root=code_root)
    for rel, data in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / rel, data)
    return out


def push_graph(
    graph: Graph,
    repo_id: str,
    *,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    branch: str | None = None,
    code_root: str | os.PathLike[str] | None = None,
    extra_files: Mapping[str, bytes | Path] | None = None,
) -> str:
    """Upload the graph repo as ONE commit (creating the repo and branch when needed).

    Everything is checked before the first request: an invalid graph creates nothing on the
    Hub. Returns the commit sha.
    """
    files: dict[str, bytes | Path] = dict(graph_files(graph, repo_id, code_root=code_root))
    files.update(extra_files or {})
    if any(not _inside(p) for p in files):
        raise GraphRepoError(f"paths must stay inside the repo: {sorted(p for p in files if not _inside(p))}")
    message = commit_message or f"Upload diffblocks graph {graph.name!r}"
    return upload_files(repo_id, files, commit_message=message, private=private, token=token, branch=branch)


def _inside(path: str) -> bool:
    parts = Path(path).parts
    return bool(parts) and not Path(path).is_absolute() and ".." not in parts

