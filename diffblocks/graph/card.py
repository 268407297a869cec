"""The model card (``README.md``) written beside a shared graph.

It is generated from the graph itself, so it cannot drift from it: YAML front matter
(``library_name: diffblocks``, tags, the base models the index points at), what the graph does,
its inputs with types and defaults, its components and where they come from, a Mermaid
picture, and a Python snippet that runs it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..blocks.ports import MISSING
from ..components import ComponentSpec

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["model_card", "example_inputs", "base_models"]

#: Values the snippet passes for required inputs, by port type name.
_EXAMPLES: dict[str, Any] = {"str": "a red circle on the left", "float": 1.0, "int": 1, "bool": False}


def _cell(text: Any) -> str:
    """One Markdown table cell: no pipes or line breaks from user text."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip() or " "


def _default(value: Any) -> str:
    if value is MISSING:
        return "required"
    try:
        return f"`{json.dumps(value)}`"
    except (TypeError, ValueError):
        return f"`{type(value).__name__}`"


def example_inputs(graph: Graph) -> dict[str, Any]:
    """Values for the graph's required inputs (and ``prompt``, always worth showing) that the
    card's snippet passes: a sentence for a string, ``1.0`` for a float, ...; inputs of other
    types are left out."""
    out: dict[str, Any] = {}
    for name, port in graph.inputs.items():
        if not port.required and name != "prompt":
            continue
        value = _EXAMPLES["str"] if name == "prompt" else _EXAMPLES.get(port.type_name)
        if value is not None:
            out[name] = value
    return out


def _is_local(path: str | None) -> bool:
    return path is not None and ComponentSpec(name="x", pretrained_model_name_or_path=path).is_local


def base_models(specs: Mapping[str, ComponentSpec] | None, repo_id: str | None = None) -> list[str]:
    """The Hub repos the index's components come from (not this repo, not local folders)."""
    found: list[str] = []
    for spec in (specs or {}).values():
        source = spec.pretrained_model_name_or_path
        if source and source != repo_id and not _is_local(source) and source not in found:
            found.append(source)
    return found


def _front_matter(graph: Graph, bases: Sequence[str]) -> str:
    tags = ["diffblocks", "diffusion-graph"]
    if graph.code:
        tags.append("custom-code")
    lines = ["---", "library_name: diffblocks", "tags:"]
    lines += [f"- {t}" for t in tags]
    if bases:
        lines.append("base_model:")
        lines += [f"- {json.dumps(b)}" for b in bases]
    lines.append("---")
    return "\n".join(lines)


def _inputs_table(graph: Graph) -> list[str]:
    ports = graph.inputs
    if not ports:
        return ["This graph takes no inputs."]
    rows = ["| input | type | default | description |", "|---|---|---|---|"]
    for name, port in ports.items():
        rows.append(f"| `{name}` | `{_cell(port.type_name)}` | {_cell(_default(port.default))} | {_cell(port.description)} |")
    return rows


def _components_table(graph: Graph, specs: Mapping[str, ComponentSpec] | None, repo_id: str | None) -> list[str]:
    needed = graph.required_components()
    if not needed:
        return ["This graph needs no components (models, tokenizers, schedulers)."]
    rows = ["| component | expects | comes from |", "|---|---|---|"]
    for name, ref in needed.items():
        spec = (specs or {}).get(name)
        if spec is None:
            where = "not named by an index: pass it when running"
        elif spec.pretrained_model_name_or_path in (None, repo_id) or _is_local(spec.pretrained_model_name_or_path):
            where = f"this repo, `{spec.subfolder or '.'}/`"
        else:
            at = f" at `{spec.revision}`" if spec.revision else ""
            sub = f", `{spec.subfolder}/`" if spec.subfolder else ""
            where = f"[{spec.pretrained_model_name_or_path}]" \
                    f"(https://huggingface.co/{spec.pretrained_model_name_or_path}){sub}{at}"
        rows.append(f"| `{name}` | `{_cell(ref.expected_name)}` | {where} |")
    return rows


def _snippet(graph: Graph, repo_id: str, pipeline: bool) -> str:
    trust = ", trust_remote_code=True" if graph.code else ""
    args = ", ".join(f"{k}={v!r}" for k, v in example_inputs(graph).items())
    if pipeline:
        return "\n".join([
            "from diffblocks import Pipeline",
            "",
            f"pipe = Pipeline.from_pretrained({repo_id!r}{trust})",
            f"out = pipe({args + ', ' if args else ''}seed=0)",
            "print(sorted(out.outputs))",
        ])
    return "\n".join([
        "from diffblocks import Graph",
        "",
        f"graph = Graph.from_pretrained({repo_id!r}{trust})",
        f"result = graph.run(inputs={{{', '.join(f'{k!r}: {v!r}' for k, v in example_inputs(graph).items())}}}, progress=False)",
        "print(dict(result))",
    ])


def model_card(
    graph: Graph,
    repo_id: str,
    *,
    specs: Mapping[str, ComponentSpec] | None = None,
    pipeline: bool = False,
) -> str:
    """The ``README.md`` text for ``graph`` shared as ``repo_id`` (a Hub id or a folder).

    ``specs`` are the components the repo's ``modular_model_index.json`` names (their repos
    become ``base_model``); ``pipeline`` makes the snippet load a Pipeline instead of a Graph.
    """
    bases = base_models(specs, repo_id)
    parts = [
        _front_matter(graph, bases),
        "",
        f"# {graph.name}",
        "",
        graph.description or f"A [diffblocks](https://github.com/diffblocks/diffblocks) graph with "
        f"{len(graph.nodes)} node(s): {', '.join(graph.nodes)}.",
        "",
        "## Inputs",
        "",
        *_inputs_table(graph),
        "",
        "## Outputs",
        "",
        ", ".join(f"`{name}` (`{port.type_name}`)" for name, port in graph.outputs.items()) or "none",
        "",
        "## Components",
        "",
        *_components_table(graph, specs, repo_id),
        "",
    ]
    if graph.code:
        parts += [
            "## Custom code",
            "",
            "This graph registers its own blocks from these files of the repo: "
            + ", ".join(f"`{p}`" for p in graph.code) + ". diffblocks imports them only with "
            "`trust_remote_code=True`; read them before you pass it.",
            "",
        ]
    parts += [
        "## Graph",
        "",
        "```mermaid",
        graph.to_mermaid().rstrip(),
        "```",
        "",
        "## Use it",
        "",
        "```python",
        _snippet(graph, repo_id, pipeline),
        "```",
        "",
    ]
    return "\n".join(parts)
