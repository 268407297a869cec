"""The package's layers, read from the source: every import statement (function-level ones
included, since they run too), resolved to diffblocks modules.

* the block machinery (``diffblocks.blocks``) imports nothing else from the package;
* models and schedulers know nothing of blocks, graphs, registries or presets;
* no import cycle between packages, and none between modules at all.

Imports under ``if TYPE_CHECKING:`` are left out: they never run.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "diffblocks"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every Import / ImportFrom in the tree, skipping ``if TYPE_CHECKING:`` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The diffblocks modules that module ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # ``from pkg import sub`` imports the submodule when there is one, else a name of pkg.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            while target and target not in known:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target.startswith("diffblocks") and target != name:
                found.add(target)
    return found


@functools.cache
def import_graph() -> nx.DiGraph:
    modules = _modules()
    known = set(modules)
    graph = nx.DiGraph()
    graph.add_nodes_from(known)
    for name, path in modules.items():
        graph.add_edges_from((name, target) for target in _imports(name, path, known))
    return graph


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_parser_sees_function_level_imports():
    graph = import_graph()
    # pipeline.py imports the schedulers inside a method: that edge must be seen.
    assert graph.has_edge("diffblocks.pipeline", "diffblocks.schedulers")
    assert graph.has_edge("diffblocks.presets.sd", "diffblocks.presets.sd.hints")


def test_block_machinery_imports_nothing_else_from_the_package():
    graph = import_graph()
    outside = sorted(
        (m, t) for m, t in graph.edges if _inside(m, "diffblocks.blocks") and not _inside(t, "diffblocks.blocks")
    )
    assert not outside, f"diffblocks.blocks must depend only on itself: {outside}"


def test_models_and_schedulers_know_nothing_of_blocks():
    graph = import_graph()
    upper = ("diffblocks.blocks", "diffblocks.graph", "diffblocks.presets", "diffblocks.registry", "diffblocks.pipeline")
    bad = sorted(
        (m, t) for m, t in graph.edges
        if (_inside(m, "diffblocks.models") or _inside(m, "diffblocks.schedulers")) and any(_inside(t, u) for u in upper)
    )
    assert not bad, f"models/ and schedulers/ must not import blocks, graphs, registries or presets: {bad}"


def _unit(module: str) -> str:
    """The layer a module belongs to: ``diffblocks.<package>`` (each family package and
    ``presets.stages`` on its own), or the top-level module itself."""
    parts = module.split(".")
    return ".".join(parts[:3] if parts[1:2] == ["presets"] and len(parts) > 3 else parts[:2])


def test_no_import_cycle_between_packages():
    graph = import_graph()
    units = nx.DiGraph()
    units.add_edges_from((_unit(m), _unit(t)) for m, t in graph.edges if _unit(m) != _unit(t))
    cycles = sorted(sorted(c) for c in nx.simple_cycles(units))
    assert not cycles, f"import cycles between packages: {cycles}"


def test_no_module_cycle_at_all():
    cycles = [sorted(c) for c in nx.strongly_connected_components(import_graph()) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"
