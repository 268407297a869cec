"""``GraphError``: every problem found in a graph, each naming node, port and (from a file) JSON path."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Problem", "GraphError", "InputError", "PROBLEM_KINDS"]

#: Every kind of problem validation can report.
PROBLEM_KINDS = (
    "cycle",
    "unconnected_input",
    "type_mismatch",
    "unknown_block",
    "duplicate_name",
    "missing_component",
    "component_conflict",
    "unknown_port",
    "bad_config",
    "bad_structure",
    "bad_json",
    "bad_input",
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a graph.

    ``node`` is a node path (``"denoise/guider"`` inside composites), ``port`` a port name,
    ``json_path`` where in the file it came from (``graph.nodes.denoise.loop.body...``).
    """

    kind: str
    message: str
    node: str | None = None
    port: str | None = None
    json_path: str | None = None

    @property
    def where(self) -> str:
        if self.node and self.port:
            return f"{self.node}.{self.port}"
        return self.node or (f"input {self.port}" if self.port else "graph")

    def __str__(self) -> str:
        text = f"[{self.kind}] {self.where}: {self.message}"
        if self.json_path:
            text += f"  (at {self.json_path})"
        return text

    def nested(self, prefix: str, json_prefix: str | None = None) -> Problem:
        """The same problem seen from an enclosing graph whose node ``prefix`` holds this one."""
        node = f"{prefix}/{self.node}" if self.node else prefix
        path = self.json_path
        if json_prefix and path:
            path = f"{json_prefix}.{path}"
        return Problem(self.kind, self.message, node, self.port, path)


class GraphError(Exception):
    """A graph (or graph file, or run request) is invalid. ``.problems`` lists every problem;
    the message shows the first ``PRINT_LIMIT`` of them and counts the rest."""

    #: Problems spelled out in the message (a hostile file can have 100,000 of them).
    PRINT_LIMIT = 50

    def __init__(self, problems: list[Problem] | Problem | str, title: str = "invalid graph") -> None:
        if isinstance(problems, str):
            problems = [Problem("bad_structure", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        self.title = title
        super().__init__(self._render())

    @property
    def kinds(self) -> set[str]:
        return {p.kind for p in self.problems}

    def _render(self) -> str:
        n = len(self.problems)
        head = f"{self.title}: {n} problem{'s' if n != 1 else ''}"
        lines = [head, *(f"  - {p}" for p in self.problems[: self.PRINT_LIMIT])]
        if n > self.PRINT_LIMIT:
            lines.append(f"  ... and {n - self.PRINT_LIMIT} more (all of them are in GraphError.problems)")
        return "\n".join(lines)



class InputError(GraphError, ValueError):
    """A value given to a run is wrong: a required input of the selected workflow is missing, a
    number is out of range, a size does not fit the model. Raised before any weight is used.

    It is a ``GraphError`` (``.problems`` lists every bad input, kind ``bad_input``) and a
    ``ValueError``, so code catching either keeps working.
    """

    def __init__(self, problems: list[Problem] | Problem | str, title: str = "bad input") -> None:
        if isinstance(problems, str):
            problems = [Problem("bad_input", problems)]
        super().__init__(problems, title=title)

    def _render(self) -> str:
        if len(self.problems) == 1:
            p = self.problems[0]
            where = f"{p.where}: " if (p.node or p.port) else ""
            return f"{self.title}: {where}{p.message}"
        return super()._render()
