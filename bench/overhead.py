"""Executor overhead: what the graph machinery costs on top of the blocks' own work.

    python bench/overhead.py [--iterations 1000] [--body 10] [--nodes 200] [--repeats 7]

1. A Loop of ``iterations`` steps whose body is ``body`` trivial float blocks, run by the
   compiled plan, next to a plain Python loop calling the same functions with the same keyword
   arguments: µs per node call for both, and the difference (the executor's own cost).
2. The same chain of trivial blocks as top-level nodes with memoisation on (fingerprinting and
   cache lookups per node) - the cost paid once per pipeline run, not per denoise step.
3. Validate + compile a freshly built ``nodes``-node graph (a chain with a fan-out per node).

Times are the fastest of ``repeats`` runs (the robust statistic on a shared machine).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from diffblocks.blocks import block
from diffblocks.graph import Graph, Loop


@block("bench_add", register=False, output_name="x")
def add(x: float, t: float) -> float:
    return x + t


@block("bench_half", register=False, output_name="x")
def half(x: float) -> float:
    return x * 0.5


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def loop_graph(body_nodes: int) -> Graph:
    steps = [(f"n{i}", add if i % 2 == 0 else half) for i in range(body_nodes)]
    body = Graph.sequential(steps, name="body")
    return Graph.wrap(Loop(body, over="ts", item="t", carry={"x": "x"}, progress=False), "bench")


def plain_loop(ts: list[float], body_nodes: int) -> float:
    fns = [(add.fn, True) if i % 2 == 0 else (half.fn, False) for i in range(body_nodes)]
    x = 0.0
    for t in ts:
        for fn, wants_t in fns:
            x = fn(x=x, t=t) if wants_t else fn(x=x)
    return x


def big_graph(n: int) -> Graph:
    """A chain of n nodes where every add node also reads the graph input t (fan-out)."""
    steps = [(f"n{i}", add if i % 2 == 0 else half) for i in range(n)]
    return Graph.sequential(steps, name="big")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--body", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    ts = [0.001] * args.iterations
    calls = args.iterations * args.body
    plan = loop_graph(args.body).compile(cache=False)
    run = lambda: plan.run({"ts": ts, "x": 0.0}, progress=False)  # noqa: E731
    assert abs(run()["x"] - plain_loop(ts, args.body)) < 1e-9
    t_plan = best_of(args.repeats, run) / calls * 1e6
    t_plain = best_of(args.repeats, lambda: plain_loop(ts, args.body)) / calls * 1e6

    top = big_graph(args.body)
    top_plan = top.compile()
    top_plan.run({"x": 0.0, "t": 1.0}, progress=False)
    t_memo_hit = best_of(args.repeats, lambda: top_plan.run({"x": 0.0, "t": 1.0}, progress=False)) / args.body * 1e6
    counter = iter(range(10**9))
    t_memo_miss = best_of(args.repeats, lambda: top_plan.run({"x": float(next(counter)), "t": 1.0}, progress=False)) / args.body * 1e6

    def validate_and_compile() -> None:
        graph = big_graph(args.nodes)
        start = time.perf_counter()
        graph.compile(cache=False)
        timings.append(time.perf_counter() - start)

    timings: list[float] = []
    for _ in range(args.repeats):
        validate_and_compile()
    t_compile = min(timings) * 1e3

    rows = [
        ("per node call in a loop, executor", f"{t_plan:.2f} µs", f"{args.iterations} steps x {args.body} trivial blocks"),
        ("per node call in a loop, plain Python", f"{t_plain:.2f} µs", "same functions, same keyword arguments"),
        ("executor cost per node call", f"{t_plan - t_plain:.2f} µs", "target < 5 µs"),
        ("top-level node, memo hit", f"{t_memo_hit:.2f} µs", "fingerprint inputs + lookup"),
        ("top-level node, memo miss", f"{t_memo_miss:.2f} µs", "fingerprint + run + store"),
        (f"validate + compile {args.nodes} nodes", f"{t_compile:.1f} ms", "target < 50 ms"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'time':>10}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>10}  {note}")


if __name__ == "__main__":
    main()
