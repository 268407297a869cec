"""A global edit counter. Any edit of any graph bumps it, so cached derived data (ports,
problems, compiled plans) of a graph — and of every graph that nests it — is recomputed.
Over-invalidation is cheap; a stale plan after editing a nested body graph would not be."""

from __future__ import annotations

_revision = 0


def touch() -> None:
    global _revision
    _revision += 1


def revision() -> int:
    return _revision
