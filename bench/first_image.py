"""Time-to-first-image of the README's main command, and the thread choice behind it.

    PYTHONPATH=. python bench/first_image.py [--repeats 2]

Runs ``python -m diffblocks run --prompt "a red circle on the left" --out ...`` in fresh
processes (import, load, 50 steps, decode, PNG) with the automatic thread choice and with
``--threads N`` for every N up to the CPU count, interleaved so a busy machine hits each alike,
and ``--help`` for the start-up alone. Prints a table of wall-clock seconds; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND = ["-m", "diffblocks", "run", "--prompt", "a red circle on the left", "--quiet"]


def _time(args: list[str], out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, env=env, cwd=out.parent, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    repeats = parser.parse_args().repeats
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    variants = {"--help": ["-m", "diffblocks", "--help"], "auto": COMMAND}
    variants.update({f"--threads {n}": [*COMMAND, "--threads", str(n)] for n in range(1, cpus + 1)})
    times: dict[str, list[float]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.png"
        for _ in range(repeats):
            for name, args in variants.items():
                extra = [] if name == "--help" else ["--out", str(out)]
                times[name].append(_time([*args, *extra], out))
    print(f"| run ({cpus} CPUs, load {os.getloadavg()[0]:.1f}) | median s | all s |")
    print("|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")


if __name__ == "__main__":
    main()
