"""Picking the torch thread count while training on a small, possibly shared CPU."""

from __future__ import annotations

import math

import torch


class ThreadPicker:
    """Chooses 1 or ``max_threads`` torch threads from the measured step times.

    On an idle 2-core machine two threads are ~1.6x faster than one, but while any other
    process runs, two threads wait on each other at every operator and a step gets 10-30x
    slower. So: measure one thread first, then probe ``max_threads`` for ``probe_len``
    steps (abandoned at the first very slow one) and keep it while it stays faster; after a
    slow step fall back to one thread and probe again ``probe_every`` steps later. One and
    two threads give the same results up to float rounding (reductions split differently),
    so the choice changes speed, not the recipe; a run is bitwise reproducible with a fixed
    thread count (``--threads 1``).
    """

    def __init__(self, max_threads: int, probe_every: int = 150, probe_len: int = 3) -> None:
        self.max_threads, self.probe_every, self.probe_len = max_threads, probe_every, probe_len
        self.fastest: dict[int, float] = {}
        self.steps: dict[int, int] = {}  # steps run per thread count, for the summary
        self.probe: list[float] = []
        self.threads, self.since_probe = 1, probe_every - 3  # three baseline steps, then a probe
        torch.set_num_threads(1)

    def _use(self, threads: int) -> None:
        self.threads = threads
        torch.set_num_threads(threads)

    def record(self, seconds: float) -> None:
        """Feed the last step's duration; may change the thread count for the next step."""
        n, one = self.threads, self.fastest.get(1, math.inf)
        self.steps[n] = self.steps.get(n, 0) + 1
        if n == 1:
            self.fastest[1] = min(one, seconds)
            self.since_probe += 1
            if self.max_threads > 1 and self.since_probe >= self.probe_every:
                self.since_probe, self.probe = 0, []
                self._use(self.max_threads)
        elif len(self.probe) < self.probe_len:  # probing
            self.probe.append(seconds)
            if seconds > 3 * one or (len(self.probe) == self.probe_len and min(self.probe) > 0.9 * one):
                self._use(1)
            elif len(self.probe) == self.probe_len:
                self.fastest[n] = min(self.probe)
        elif seconds > 2.0 * self.fastest[n]:  # contention started: back to one thread
            self._use(1)
