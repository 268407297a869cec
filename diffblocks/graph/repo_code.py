"""Custom blocks carried by a graph repo: the ``code`` list, the trust check, the import.

A graph file may name, in its top-level ``"code"`` list, Python files of its repo (paths
relative to the repo root) that register the blocks it uses. Importing such a file runs it,
so :func:`import_graph_code` refuses, *before any file is read*, unless the caller passed
``trust_remote_code=True``; the import itself goes through
:func:`diffblocks.registry.trust.load_module_from_file`, the one place repo code is imported.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from ..blocks.errors import GraphError, Problem
from .jsonio import BlockNode, GraphDocument, GraphNode, GraphSpec, LoopNode, SwitchNode
from ..registry.trust import UntrustedCodeError, load_module_from_file

__all__ = [
    "REMOTE_MODULE_PREFIX",
    "check_code_paths",
    "custom_block_names",
    "graph_block_names",
    "import_graph_code",
    "parse_document",
    "refusal_message",
    "unknown_block_error",
]

#: Modules imported from repo files are named ``diffblocks_remote_<stem>_<hash>`` (registry/trust.py).
REMOTE_MODULE_PREFIX = "diffblocks_remote_"
_MAX_SCAN_BYTES = 1 << 20


def graph_block_names(spec: GraphSpec, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every ``(node path, block name)`` of a parsed graph file, nested graphs included.

    Switch predicates are yielded too (as ``"<node>:predicate"``): repo code may register them.
    """
    stack: list[tuple[GraphSpec, str]] = [(spec, prefix)]
    while stack:
        current, where = stack.pop()
        for node, nspec in current.nodes.items():
            path = f"{where}{node}"
            if isinstance(nspec, BlockNode):
                yield path, nspec.block
            elif isinstance(nspec, GraphNode):
                stack.append((nspec.graph, f"{path}/"))
            elif isinstance(nspec, LoopNode):
                stack.append((nspec.loop.body, f"{path}/"))
            elif isinstance(nspec, SwitchNode):
                if nspec.switch.predicate:
                    yield f"{path}:predicate", nspec.switch.predicate
                for branch, body in nspec.switch.branches.items():
                    stack.append((body, f"{path}/{branch}/"))


def _implementation_module(obj: Any) -> str:
    """The module defining a registered block or predicate (a function block: its function's)."""
    fn = getattr(obj, "fn", None)
    return str(getattr(fn if fn is not None else type(obj), "__module__", "") or "")


def _is_registered(name: str, predicate: bool) -> tuple[bool, str | None]:
    """(registered?, module that registered it)."""
    from ..registry.blocks import get_block, get_predicate

    try:
        if predicate:
            return True, str(getattr(get_predicate(name), "__module__", ""))
        return True, _implementation_module(get_block(name))
    except GraphError:
        return False, None


def custom_block_names(document: GraphDocument) -> list[str]:
    """Names the graph uses that no shipped or installed package provides: not registered at
    all, or registered by a repo file imported earlier in this process."""
    found: list[str] = []
    for path, name in graph_block_names(document.graph):
        known, module = _is_registered(name, path.endswith(":predicate"))
        if (not known or (module or "").startswith(REMOTE_MODULE_PREFIX)) and name not in found:
            found.append(name)
    return found


def check_code_paths(
    paths: Sequence[str], root: Path | None, listing: Sequence[str] | None = None, *, links_within: Path | None = None
) -> list[str]:
    """The ``code`` paths, checked to stay inside the repo: relative, no ``..``, ``.py`` files
    that exist (in ``root``, or in the repo ``listing`` when the files are not downloaded yet).
    A link must lead inside ``root`` (or ``links_within``: a Hub cache's snapshot files are links
    to its blob folder). One ``GraphError`` lists every bad path."""
    problems: list[Problem] = []
    base = root.resolve() if root is not None else None
    allowed = links_within.resolve() if links_within is not None else base
    for i, raw in enumerate(paths):
        where = f"code[{i}]"
        pure = PurePosixPath(raw)
        if not raw or "\\" in raw or pure.is_absolute() or re.match(r"^[A-Za-z]:", raw) or any(
            part in ("..", ".") or part.startswith(".") for part in pure.parts
        ):
            problems.append(Problem("bad_json", f"code path {raw!r} must be a relative path inside the repo "
                                    "(no '..', no absolute path, no hidden folder)", json_path=where))
            continue
        if pure.suffix != ".py":
            problems.append(Problem("bad_json", f"code path {raw!r} is not a .py file", json_path=where))
            continue
        if listing is not None and raw not in listing:
            problems.append(Problem("bad_json", f"code file {raw!r} is not in the repo", json_path=where))
        elif base is not None:
            target = (base / raw).resolve()
            if not (target.is_relative_to(base) or (allowed is not None and target.is_relative_to(allowed))):
                problems.append(Problem("bad_json", f"code path {raw!r} leads outside the repo (a link?)", json_path=where))
            elif not target.is_file():
                problems.append(Problem("bad_json", f"code file {raw!r} does not exist in {base}", json_path=where))
    if problems:
        raise GraphError(problems, title="invalid code list in graph file")
    return list(paths)


def refusal_message(document: GraphDocument, source: str) -> str:
    names = custom_block_names(document)
    blocks = f"the block(s) {', '.join(repr(n) for n in names)}" if names else "its blocks"
    files = ", ".join(repr(p) for p in document.code)
    return (
        f"graph {document.graph.name!r} from {source} uses {blocks}, registered by the Python file(s) "
        f"{files} of that repo. Importing them runs code that diffblocks does not ship, so nothing "
        "was imported. Read those files first; then pass trust_remote_code=True "
        "(command line: --trust-remote-code)."
    )


def import_graph_code(
    document: GraphDocument, root: Path, *, trust_remote_code: bool, source: str, links_within: Path | None = None
) -> list[str]:
    """Import the ``code`` files of ``document`` from ``root`` (the repo folder at one commit).

    Without ``trust_remote_code`` this raises :class:`UntrustedCodeError` naming the blocks, the
    files and the flag, and reads no file. Returns the module names imported.
    """
    if not document.code:
        return []
    check_code_paths(document.code, root, links_within=links_within)
    if not trust_remote_code:
        raise UntrustedCodeError(refusal_message(document, source))
    # Blocks a repo file registered earlier (another commit of this repo, say) give way to this
    # commit's files; they come back if this import fails.
    stale = _unregister_remote(custom_block_names(document))
    modules = []
    try:
        for raw in document.code:
            try:
                module = load_module_from_file(root / raw, trust_remote_code=True, refusal=refusal_message(document, source))
            except ValueError as err:  # register_block refusing a name a shipped block already took
                raise GraphError([Problem("unknown_block", f"code file {raw!r} of {source}: {err}",
                                          json_path="code")], title="cannot register the repo's blocks") from None
            _reregister(module, stale)
            modules.append(module.__name__)
    except BaseException:
        _restore(stale)
        raise
    return modules


def _unregister_remote(names: Sequence[str]) -> dict[str, Any]:
    """Unregister the blocks among ``names`` that repo files registered; returns them by name."""
    from ..registry.blocks import get_block, unregister_block

    taken = {}
    for name in names:
        known, module = _is_registered(name, False)
        if known and (module or "").startswith(REMOTE_MODULE_PREFIX):
            taken[name] = get_block(name)
            unregister_block(name)
    return taken


def _reregister(module: Any, names: Mapping[str, Any]) -> None:
    """A module imported before (same bytes) is not run again: register its blocks from its globals."""
    from ..blocks.base import Block
    from ..registry.blocks import register_block

    for value in vars(module).values():
        if isinstance(value, Block) and value.name is not None and value.name in names and not _is_registered(value.name, False)[0]:
            register_block(value)


def _restore(blocks: Mapping[str, Any]) -> None:
    from ..registry.blocks import register_block

    for name, blk in blocks.items():
        register_block(blk, name=name, replace=True)


def _mentions(root: Path | None, name: str, skip: Sequence[str]) -> list[str]:
    """Repo ``.py`` files (not already in ``code``) whose text mentions ``name``; text only, never imported."""
    if root is None or not root.is_dir():
        return []
    hits = []
    pattern = re.compile(r"['\"]" + re.escape(name) + r"['\"]")
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in skip or not path.is_file() or path.stat().st_size > _MAX_SCAN_BYTES:
            continue
        try:
            if pattern.search(path.read_text(encoding="utf-8", errors="replace")):
                hits.append(rel)
        except OSError:
            continue
    return hits


def unknown_block_error(
    document: GraphDocument, root: Path | None, source: str, other_files: Sequence[str] | None = None
) -> GraphError | None:
    """A ``GraphError`` for every block name still unregistered, saying where it might come from
    (``other_files``: the repo's file list when only part of it was downloaded); None when every
    name is registered."""
    problems: list[Problem] = []
    for path, name in graph_block_names(document.graph):
        predicate = path.endswith(":predicate")
        if _is_registered(name, predicate)[0]:
            continue
        what = "Switch predicate" if predicate else "block"
        hints = []
        mentioned = _mentions(root, name, document.code)
        unlisted = sorted(f for f in other_files or () if f.endswith(".py") and f not in document.code)
        if mentioned:
            hints.append(f"the repo file(s) {mentioned} mention it: add them to the graph's \"code\" list")
        elif unlisted:
            hints.append(f"the repo holds Python file(s) {unlisted[:10]} that the graph's \"code\" list does not name")
        if document.code:
            hints.append(f"none of the graph's code files {list(document.code)} registers it")
        hints.append("a plugin package registers blocks through the entry-point group 'diffblocks.blocks' "
                     "(pip install it), and a graph repo through its \"code\" list")
        node = path.split(":")[0].split("/")[-1]
        problems.append(Problem("unknown_block", f"no {what} registered as {name!r} (node {path} of {source}); "
                                + "; ".join(hints), node))
    return GraphError(problems, title=f"graph from {source} names unknown blocks") if problems else None


def parse_document(text: str) -> GraphDocument | None:
    """The strict parse of graph JSON text, or None when it is not a valid graph file (the
    caller then lets :func:`diffblocks.graph.jsonio.load_graph` report every problem)."""
    import json

    from pydantic import ValidationError

    try:
        return GraphDocument.model_validate(json.loads(text))
    except (ValueError, RecursionError, ValidationError):
        return None

