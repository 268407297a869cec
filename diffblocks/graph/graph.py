"""``Graph``: the public graph class, named nodes, explicit edges ``"node.port" -> "node.port"``,
named inputs and outputs.

A Graph is itself a Block (its ports are its exposed inputs and outputs), so graphs nest. Its
structure, checks and edits are ``GraphCore`` (core.py); this class adds what needs the modules
above the structure: compiling and running, JSON files and repos, selection, auto-wiring and
pictures. Those modules take a ``GraphCore`` and never import this one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from diffblocks.blocks.errors import GraphError, Problem
from diffblocks.fileio import atomic_write_text
from diffblocks.graph import compose, export, jsonio, plan, repo
from diffblocks.graph import select as selection
from diffblocks.graph.composite import Composite
from diffblocks.graph.core import GraphCore, register_graph_class
from diffblocks.graph.jsonfmt import dumps_compact
from diffblocks.graph.parts import GraphInput, UnknownBlock, split_ref

__all__ = ["Composite", "Graph", "GraphInput", "UnknownBlock", "split_ref"]


class Graph(GraphCore):
    """A dataflow graph of blocks.

    Build::

        g = Graph("txt2img")
        g.add("encode", "encode_prompt")                # a registered name, or a Block
        g.add("cfg", "classifier_free_guidance", config={"guidance_scale": 7.5})
        g.connect("encode.prompt_embeds", "denoise.prompt_embeds")
        g.expose_input("prompt", "encode.prompt")
        g.expose_output("image", "decode.image")
        g.validate()

    Run: ``g(components=cm, prompt="a cat")`` or ``g.run(inputs={...}, components=cm)``.
    """

    @classmethod
    def sequential(
        cls,
        steps: Any,
        name: str = "graph",
        rename: Mapping[str, str] | None = None,
        outputs: Any = None,
    ) -> Graph:
        """Auto-wire blocks by port name; see ``compose.sequential``."""
        return compose.sequential(steps, name=name, rename=rename, outputs=outputs, graph_cls=cls)

    chain = sequential

    def select(self, **present: Any) -> Graph:
        """The graph that would run given these inputs: every Switch replaced by its chosen branch."""
        return selection.select(self, present)

    def compile(self, cache: Any = None) -> plan.Plan:
        """Validate and compile into a ``Plan`` (cached until the graph changes)."""
        if cache is None:
            return self._cached("plan", lambda: plan.compile_graph(self, cache=self.cache))
        return plan.compile_graph(self, cache=cache)

    def run(self, inputs: Mapping[str, Any] | None = None, components: Mapping[str, Any] | None = None, **options: Any) -> Any:
        """Compile (once) and run; returns a ``Result`` with every graph output.
        Options: progress, callbacks, on_node_end, grad, cache, generator (see ``Plan.run``)."""
        return self.compile().run(inputs=inputs, components=components, **options)

    def __call__(self, components: Mapping[str, Any] | None = None, **inputs: Any) -> Any:
        """Run like a function: one output -> the value, several -> a ``Result``."""
        return self.compile().call(components=components, inputs=inputs)

    def to_dict(self) -> dict[str, Any]:
        return jsonio.graph_to_document(self)

    def to_json(self, indent: int | None = 2) -> str:
        """The graph as versioned JSON text (exact round-trip with ``from_json``); small objects and
        arrays stay on one line (``indent=None``: all on one line)."""
        document = self.to_dict()
        try:
            if indent is None:
                return json.dumps(document, ensure_ascii=False, allow_nan=False)
            return dumps_compact(document, indent=indent)
        except ValueError as exc:  # NaN / infinity in a config or default
            raise GraphError([Problem("bad_config", f"cannot be written as JSON: {exc}")], title=f"graph {self.name!r} cannot be saved") from None

    @classmethod
    def from_json(cls, text_or_path: str | Path, trust_remote_code: bool = False) -> Graph:
        """Load a graph from JSON text or a file path. ``GraphError`` lists every problem.
        (``trust_remote_code`` is the hook for import paths in files; none are honoured yet.)"""
        return jsonio.load_graph(text_or_path, trust_remote_code=trust_remote_code, graph_cls=cls)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Graph:
        return jsonio.graph_from_document(document, graph_cls=cls)

    def save(self, path: str | Path) -> None:
        """Write the graph file atomically: a failed save leaves an existing file as it was."""
        atomic_write_text(path, self.to_json() + "\n")

    def save_pretrained(self, save_directory: str | Path, *, code_root: str | Path | None = None) -> Path:
        """Write ``graph.json``, a generated ``README.md`` model card and the ``code`` files (see docs/sharing.md)."""
        return repo.save_graph(self, save_directory, code_root=code_root)

    @classmethod
    def from_pretrained(cls, repo_id_or_dir: str | Path, revision: str | None = None,
                        trust_remote_code: bool = False, **hub: Any) -> Graph:
        """Load a graph repo: a local folder, or a Hub repo at ``revision`` resolved to one commit.
        Its ``code`` files are imported only with ``trust_remote_code=True``."""
        return repo.graph_from_pretrained(repo_id_or_dir, revision=revision, trust_remote_code=trust_remote_code, **hub)

    def push_to_hub(self, repo_id: str, **options: Any) -> str:
        """Upload as ONE commit (repo created if needed); options: commit_message, private, token,
        branch, code_root. Returns the commit sha."""
        return repo.push_graph(self, repo_id, **options)

    def to_mermaid(self) -> str:
        return export.to_mermaid(self)

    def to_dot(self) -> str:
        return export.to_dot(self)

    def summary(self) -> str:
        """A readable text summary: inputs, nodes with ports/types/components, outputs."""
        return export.to_text(self)


register_graph_class(Graph)
