"""Run reports: per top-level node, cache hit or miss and why, and time spent."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["NodeReport", "RunReport", "REPORT_COUNTERS"]

#: Key in the run's shared dict (``ctx.run``) where blocks count what they did, per node path,
#: e.g. a step cache's reused steps and skipped model blocks; the run report keeps them.
REPORT_COUNTERS = "report_counters"


@dataclass
class NodeReport:
    """What happened to one top-level node in a run."""

    status: str  # "hit", "miss", "ran" (not cacheable / cache off)
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class RunReport:
    """Per top-level node: cache hit, or miss and why; time spent. ``branches``: Switch choices."""

    nodes: dict[str, NodeReport] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    #: Per node path (inside loops too): counts a block reported, e.g. ``{"blocks_skipped": 84}``.
    counters: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def hits(self) -> list[str]:
        return [n for n, r in self.nodes.items() if r.status == "hit"]

    @property
    def ran(self) -> list[str]:
        return [n for n, r in self.nodes.items() if r.status != "hit"]

    def explain(self) -> str:
        width = max([len(n) for n in self.nodes] + [4])
        lines = [f"{'node':<{width}}  status  time      why"]
        for name, rep in self.nodes.items():
            why = "; ".join(rep.reasons)
            lines.append(f"{name:<{width}}  {rep.status:<6}  {rep.seconds * 1000:7.2f}ms  {why}")
        for path, branch in self.branches.items():
            lines.append(f"switch {path} -> {branch}")
        for path, counts in self.counters.items():
            lines.append(f"{path}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        return "\n".join(lines)

    __str__ = explain
