"""How long validating a large or hostile graph file takes (issue 21, item 2).

Prints a table; asserts nothing. Three shapes of generated graph files:

* ``unconnected``: n nodes whose required inputs are all unconnected (every problem asks
  "which output could feed this?");
* ``chain``: a valid chain of n nodes;
* ``missing``: 400 nodes plus m edges from nodes that do not exist ("did you mean ...?").

Run from the repository root: ``PYTHONPATH=. python bench/validation.py [--sizes 1000 2000 10000]``
"""

from __future__ import annotations

import argparse
import json
import time

from diffblocks.blocks import GraphError, Latents, block
from diffblocks.graph import Graph


@block("bench_scale", output_name="latents")
def _scale(latents: Latents, factor: float = 1.0) -> Latents:
    return latents * factor


def document(nodes: dict, edges: list, inputs: dict | None = None, outputs: dict | None = None) -> str:
    graph = {"name": "bench", "nodes": nodes, "edges": edges, "inputs": inputs or {}, "outputs": outputs or {}}
    return json.dumps({"format": "diffblocks.graph", "version": 1, "graph": graph})


def unconnected(n: int) -> str:
    return document({f"n{i}": {"block": "bench_scale"} for i in range(n)}, [])


def chain(n: int) -> str:
    nodes = {f"n{i}": {"block": "bench_scale"} for i in range(n)}
    edges = [[f"n{i}.latents", f"n{i + 1}.latents"] for i in range(n - 1)]
    return document(nodes, edges, {"latents": {"to": ["n0.latents"]}}, {"latents": f"n{n - 1}.latents"})


def missing(n: int, m: int) -> str:
    nodes = {f"node_number_{i}": {"block": "bench_scale"} for i in range(n)}
    edges = [[f"gone_{j}.latents", f"node_number_{j % n}.latents"] for j in range(m)]
    return document(nodes, edges)


def timed(text: str) -> tuple[float, int, int]:
    start = time.perf_counter()
    try:
        Graph.from_json(text)
        count = 0
        printed = 0
    except GraphError as err:
        count = len(err.problems)
        printed = len(str(err))
    return time.perf_counter() - start, count, printed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 2000, 10000])
    args = parser.parse_args()
    print(f"{'case':<28} {'seconds':>8} {'problems':>9} {'str chars':>10}")
    cases = [(f"unconnected n={n}", lambda n=n: unconnected(n)) for n in args.sizes]
    cases += [(f"chain n={n}", lambda n=n: chain(n)) for n in args.sizes]
    cases += [("missing n=400 m=4000", lambda: missing(400, 4000))]
    for name, make in cases:
        seconds, count, printed = timed(make())
        print(f"{name:<28} {seconds:>8.2f} {count:>9} {printed:>10}")


if __name__ == "__main__":
    main()
