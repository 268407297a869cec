"""Pipelines as graph repos: push ``graph.json`` + an index pinned to the weights' commits,
and find the graph of a repo that holds only a graph and an index.

``modular_model_index.json`` names, for each component, the repo and the *commit* its files
come from (the commit the pushing pipeline loaded, never a moving branch), so whoever loads the
graph repo later gets the same weights. With ``weights=True`` the weights travel in the repo.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..components import MODULAR_INDEX, ComponentsManager
from ..components.index import parse_index
from ..graph import Graph
from ..hub import HubError
from ..graph.card import model_card
from ..graph.repo import GRAPH_FILE, GraphRepoError, graph_files, load_graph_file, push_graph, repo_graph

if TYPE_CHECKING:
    from ..pipeline import Pipeline

__all__ = ["graph_for_pipeline", "pinned_index", "push_pipeline"]


def _manager(pipe: "Pipeline") -> ComponentsManager:
    manager = pipe.components
    if not isinstance(manager, ComponentsManager):
        raise GraphRepoError("push_to_hub needs the pipeline's components in a ComponentsManager")
    return manager


def pinned_index(data: dict[str, Any], manager: ComponentsManager) -> dict[str, Any]:
    """``data`` (a modular index) with every Hub source pinned to the commit the manager loaded.

    A component from a local folder cannot be pointed at from a shared repo: that is an error
    naming it and the fix (``weights=True``, or load it from a Hub repo).
    """
    out = dict(data)
    for name, entry in data.items():
        if name.startswith("_") or not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[2], dict)):
            continue
        loading = dict(entry[2])
        source = loading.get("pretrained_model_name_or_path")
        if source is None:
            continue  # saved next to the index: travels with the repo
        if Path(source).expanduser().is_dir() or os.path.isabs(source):
            raise GraphRepoError(
                f"component '{name}' comes from the local folder '{source}', which nobody else can "
                "reach; push with weights=True, or load the pipeline from a Hub repo"
            )
        try:
            loading["revision"] = manager._commit_for(source, loading.get("revision"))
        except HubError as err:
            raise GraphRepoError(f"component '{name}': cannot pin '{source}' to a commit: {err}") from err
        out[name] = [entry[0], entry[1], loading]
    return out


def push_pipeline(
    pipe: "Pipeline",
    repo_id: str,
    *,
    weights: bool = False,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    branch: str | None = None,
) -> str:
    """Push ``pipe`` as a graph repo: ``graph.json``, ``modular_model_index.json`` and the card
    (plus the weights with ``weights=True``), in ONE commit. Returns the commit sha."""
    manager = _manager(pipe)
    pipe.graph.validate(components=manager)
    with tempfile.TemporaryDirectory(prefix="diffblocks-push-") as tmp:
        folder = Path(tmp)
        pipe.save_pretrained(folder, save_weights=weights)
        index_path = folder / MODULAR_INDEX
        data = pinned_index(json.loads(index_path.read_text(encoding="utf-8")), manager)
        index_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        specs = parse_index(data, source=repo_id, where=MODULAR_INDEX).specs
        card = model_card(pipe.graph, repo_id, specs=specs, pipeline=True)
        repo_files = graph_files(pipe.graph, repo_id, card=card)
        extra: dict[str, bytes | Path] = {
            p.relative_to(folder).as_posix(): p
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.relative_to(folder).as_posix() not in repo_files
        }
        message = commit_message or f"Upload diffblocks pipeline {pipe.graph.name!r}"
        return push_graph(pipe.graph, repo_id, commit_message=message, private=private, token=token,
                          branch=branch, extra_files={**extra, "README.md": card.encode()})


def graph_for_pipeline(source: str, manager: ComponentsManager, revision: str | None) -> Graph | None:
    """The ``graph.json`` of a pipeline folder or Hub repo (at the commit the manager pinned
    its index to), or None when it holds none. Code files obey ``manager.trust_remote_code``."""
    local = Path(source).expanduser()
    if local.is_dir():
        path = local / GRAPH_FILE
        return load_graph_file(path, trust_remote_code=manager.trust_remote_code) if path.is_file() else None
    commit = manager._commit_for(source, revision)
    return repo_graph(source, commit, trust_remote_code=manager.trust_remote_code, **manager._hub_kwargs())
