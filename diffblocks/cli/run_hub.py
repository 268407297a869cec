"""What ``diffblocks run`` adds for graph repos: ``run REPO_ID_OR_DIR``, ``--revision``,
``--trust-remote-code``, the repo and commit recorded in the PNG, and ``--replay`` from them.

The graph source is recorded in the run settings (``graph_source``: ``{"repo", "commit"}`` or
``{"folder"}``), so ``--replay`` fetches the graph and its code from the same commit even after
the branch moved. Trust is never recorded: a replay trusts code only when told again.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from .errors import CliError

# The graph, Hub and sharing modules import torch: they are imported inside the functions, so
# building the parser (``diffblocks --help``) stays instant.

__all__ = ["add_hub_arguments", "graph_for_run", "replay_graph"]

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def _errors() -> tuple[type[Exception], ...]:
    from ..fileio import FileReadError
    from ..hub import HubError
    from ..registry.trust import UntrustedCodeError
    from ..sharing import GraphRepoError

    return (GraphRepoError, HubError, UntrustedCodeError, FileReadError)


def add_hub_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--revision", default=None, help="branch, tag or commit of a graph repo given as REPO_ID")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="import the Python files a graph repo names in its 'code' list (read them first)")


def graph_for_run(args: argparse.Namespace, settings: dict[str, Any]) -> Any:
    """The graph ``args.graph`` names: a preset, a graph file, a graph folder or a Hub repo.

    For a folder or repo, ``settings`` gets ``graph_source`` and, when it holds a
    ``modular_model_index.json`` and no ``--model`` was given, the model (pinned to the commit).
    """
    from ..components import MODULAR_INDEX
    from ..hub import list_repo_files_pinned, resolve_commit
    from ..sharing import graph_from_pretrained, load_graph_file
    from .inspect import load_target

    target = args.graph
    if target is None:
        return None
    path = Path(target).expanduser()
    try:
        if path.is_file():
            return load_graph_file(path, trust_remote_code=args.trust_remote_code)
        if path.is_dir():
            graph = graph_from_pretrained(path, trust_remote_code=args.trust_remote_code)
            settings["graph_source"] = {"folder": str(path.resolve())}
            if args.model is None and (path / MODULAR_INDEX).is_file():
                settings["model"] = str(path.resolve())
            return graph
        if not _REPO_ID.match(target):
            return load_target(target)  # a preset name
        commit = resolve_commit(target, revision=args.revision)
        graph = graph_from_pretrained(target, revision=commit, trust_remote_code=args.trust_remote_code)
        settings["graph_source"] = {"repo": target, "commit": commit}
        if args.model is None and MODULAR_INDEX in (list_repo_files_pinned(target, commit) or ()):
            settings["model"], settings["revision"] = target, commit
        return graph
    except _errors() as err:
        raise CliError(str(err)) from None


def replay_graph(meta: dict[str, Any], args: argparse.Namespace) -> Any:
    """The graph a PNG recorded. Its repo is fetched at the recorded commit (or its folder read),
    which imports its code files when ``--trust-remote-code`` is given; the graph that ran is
    then rebuilt from the recorded JSON."""
    from ..sharing import graph_from_pretrained
    from .replay import graph_from_png

    source = meta["inputs"].get("graph_source") or {}
    try:
        if source.get("repo"):
            graph_from_pretrained(source["repo"], revision=source["commit"], trust_remote_code=args.trust_remote_code)
        elif source.get("folder"):
            graph_from_pretrained(source["folder"], trust_remote_code=args.trust_remote_code)
        recorded = graph_from_png(meta["graph"], args.replay)
    except _errors() as err:
        raise CliError(str(err)) from None
    if recorded.code and not source:
        raise CliError(f"the recorded graph names code files {recorded.code} but no repo or folder to take them from")
    return recorded
