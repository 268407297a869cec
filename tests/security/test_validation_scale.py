"""Issue 21, item 2: validating a large or hostile graph file is near-linear and prints a capped list.

Before the fix, 1,000 unconnected nodes took 9 s, 2,000 took 33 s, and 400 nodes with 4,000
edges from missing nodes 65 s (100 s measured here with 100-character names). The bounds
below are generous on purpose (a shared 2-core box); bench/validation.py measures.
"""

from __future__ import annotations

import json
import time

import pytest

import tests.core.helpers  # noqa: F401  (registers the core_* blocks)
from diffblocks.blocks import GraphError
from diffblocks.graph import Graph


def _document(nodes: dict, edges: list) -> str:
    graph = {"name": "big", "nodes": nodes, "edges": edges}
    return json.dumps({"format": "diffblocks.graph", "version": 1, "graph": graph})


def _load_error(text: str) -> tuple[GraphError, float]:
    start = time.perf_counter()
    with pytest.raises(GraphError) as info:
        Graph.from_json(text)
    return info.value, time.perf_counter() - start


def test_ten_thousand_unconnected_nodes_validate_quickly_with_a_capped_message():
    text = _document({f"n{i}": {"block": "core_scale"} for i in range(10_000)}, [])
    err, seconds = _load_error(text)
    assert seconds < 10, f"validation took {seconds:.1f} s"
    assert len(err.problems) == 10_000
    assert err.kinds == {"unconnected_input"}
    # Every problem still suggests another node's output, as on small graphs.
    assert "connect n1.latents" in err.problems[0].message
    assert "connect n0.latents" in err.problems[1].message
    lines = str(err).splitlines()
    assert len(lines) == 1 + GraphError.PRINT_LIMIT + 1
    assert lines[0].endswith("10000 problems")
    assert lines[-1].strip().startswith(f"... and {10_000 - GraphError.PRINT_LIMIT} more")
    assert len(str(err)) < 20_000


def test_thousands_of_edges_from_missing_nodes_with_long_similar_names():
    stem = "a" * 100  # difflib's worst case: long, nearly equal names
    nodes = {f"{stem}_{i}": {"block": "core_scale"} for i in range(400)}
    edges = [[f"{stem}_x{j}.latents", f"{stem}_{j % 400}.latents"] for j in range(4_000)]
    text = _document(nodes, edges)
    assert len(text) > 100_000
    err, seconds = _load_error(text)
    assert seconds < 10, f"validation took {seconds:.1f} s"
    missing = [p for p in err.problems if "does not exist" in p.message]
    fed_twice = [p for p in err.problems if "already fed" in p.message]
    assert len(missing) == 400 and len(fed_twice) == 3_600
    assert "and 3950 more" in str(err)


def test_did_you_mean_still_works_on_ordinary_graphs():
    text = _document(
        {"encode": {"block": "core_make_latents"}, "scale": {"block": "core_scale"}},
        [["encdoe.latents", "scale.latents"]],
    )
    err, _ = _load_error(text)
    assert any("did you mean encode?" in p.message for p in err.problems)


def test_a_short_problem_list_is_printed_whole():
    err = GraphError("one problem")
    assert str(err).count("\n") == 1 and "more" not in str(err)
