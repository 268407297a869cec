"""The run context: where stateful helpers live so that blocks themselves stay stateless."""

from __future__ import annotations

from typing import Any

__all__ = ["RunContext"]


class RunContext:
    """Handed to a block that declares a parameter annotated ``RunContext``.

    * ``state``: a dict private to this node for the whole run (it survives loop iterations,
      so a multistep scheduler keeps its history here; it is fresh on every run);
    * ``run``: a dict shared by every node of the run;
    * ``step`` / ``total``: the innermost loop's step index and length (``None`` outside loops);
      ``steps`` lists every enclosing loop as ``(step, total)``, outermost first;
    * ``generator``: the ``torch.Generator`` passed to ``run(generator=...)``, if any;
    * ``node``: this node's path, e.g. ``"denoise/guider"``.
    """

    __slots__ = ("node", "state", "_runtime")

    def __init__(self, node: str, runtime: Any) -> None:
        self.node = node
        self.state: dict[str, Any] = {}
        self._runtime = runtime

    @property
    def run(self) -> dict[str, Any]:
        shared: dict[str, Any] = self._runtime.shared
        return shared

    @property
    def step(self) -> int | None:
        stack = self._runtime.loop_stack
        return stack[-1][0] if stack else None

    @property
    def total(self) -> int | None:
        stack = self._runtime.loop_stack
        return stack[-1][1] if stack else None

    @property
    def steps(self) -> tuple[tuple[int, int], ...]:
        return tuple((s, t) for s, t in self._runtime.loop_stack)

    @property
    def generator(self) -> Any:
        return self._runtime.generator

    def __repr__(self) -> str:
        return f"RunContext(node={self.node!r}, step={self.step}, total={self.total})"
