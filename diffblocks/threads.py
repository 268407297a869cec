"""How many intra-op CPU threads a run should use: enough for the work, no more.

A small model on a small latent spends its time in thread hand-offs, not arithmetic: the
shipped 4.6M-parameter model runs 20 steps at 64x64 in 0.2-0.4 s on one thread and 3.3 s
on two on a busy 2-core machine (docs/performance.md). So the count follows the work of one
denoiser call — parameters x latent positions x batch — with one thread per
``WORK_PER_THREAD`` of it, capped by torch's thread setting and the CPUs this process may use. The same settings
always pick the same count, so a replay runs with the threads of the original run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

__all__ = ["WORK_PER_THREAD", "available_cpus", "threads_for_work", "torch_threads"]

#: Parameters x latent positions x batch per thread. The shipped model at 512x512 (4.6M x 4096
#: x 2 = 3.8e10) still ran fastest on one thread; SD 1.5 at 512x512 (860M x 4096 x 2 = 7e12)
#: gets every core.
WORK_PER_THREAD = 1e11


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def threads_for_work(parameters: int, positions: int, batch: int = 1, limit: int | None = None) -> int:
    """Threads for one denoiser call over ``positions`` latent positions of a ``batch``, at most
    ``limit`` (default: torch's current setting and the CPUs available, so ``OMP_NUM_THREADS``
    or ``torch.set_num_threads`` still cap it, and hyper-threads torch leaves idle stay idle)."""
    if limit is None:
        limit = min(available_cpus(), torch.get_num_threads())
    work = float(parameters) * max(1, positions) * max(1, batch)
    return int(max(1, min(limit, work // WORK_PER_THREAD)))


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` intra-op threads (``None``: leave torch's setting)."""
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(count)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
