"""The generated model card (its snippet runs, against the local Hub and a local folder), the
`code` list in graph files, and docs/sharing.md executed as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from diffblocks.blocks import GraphError
from diffblocks.graph import Graph

from tests.sharing.numeric import numeric

DOC = Path(__file__).resolve().parents[2] / "docs" / "sharing.md"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _front_matter(card: str) -> dict[str, list[str] | str]:
    head = card.split("---\n")[1]
    out: dict[str, list[str] | str] = {}
    key = ""
    for line in head.splitlines():
        if line.startswith("- "):
            out.setdefault(key, []).append(json.loads(line[2:]) if line[2:].startswith('"') else line[2:])  # type: ignore[union-attr]
        else:
            key, _, value = line.partition(":")
            if value.strip():
                out[key] = value.strip()
    return out


def test_card_describes_the_graph_and_its_snippet_runs_against_the_hub(hub, capsys):
    g = numeric(4.0)
    sha = g.push_to_hub("org/numeric")
    card = hub.repos["org/numeric"].commits[sha]["README.md"].decode()
    meta = _front_matter(card)
    assert meta["library_name"] == "diffblocks" and "diffblocks" in meta["tags"]
    assert "# numeric" in card and "Adds one, then scales." in card
    assert "| `x` | `float` | `1.0` | the start value |" in card
    assert "needs no components" in card
    mermaid = card.split("```mermaid\n")[1].split("```")[0]
    assert mermaid.strip() == g.to_mermaid().strip()
    (snippet,) = _python_blocks(card)
    assert "Graph.from_pretrained('org/numeric')" in snippet
    exec(compile(snippet, "README.md", "exec"), {})
    assert "'x': 8.0" in capsys.readouterr().out  # (1 + 1) * 4


def test_card_snippet_runs_from_a_local_folder_and_names_required_inputs(tmp_path, monkeypatch, capsys):
    g = Graph("needs_x").add("mul", numeric(3.0).nodes["mul"])
    g.expose_input("x", "mul.x").expose_output("x", "mul.x")
    monkeypatch.chdir(tmp_path)
    g.save_pretrained("folder")
    (snippet,) = _python_blocks(Path("folder/README.md").read_text())
    assert "'x': 1.0" in snippet and "| `x` | `float` | required |" in Path("folder/README.md").read_text()
    exec(compile(snippet, "README.md", "exec"), {})
    assert "'x': 3.0" in capsys.readouterr().out


def test_the_code_list_round_trips_and_is_strict():
    g = numeric()
    g.code = ["pkg/blocks.py"]
    text = g.to_json()
    assert json.loads(text)["code"] == ["pkg/blocks.py"]
    back = Graph.from_json(text)
    assert back.code == ["pkg/blocks.py"] and back.to_json() == text and back.copy().code == back.code
    assert "code" not in json.loads(numeric().to_json())  # absent when empty: old files unchanged
    for bad in (["../x.py"], ["/abs.py"], ["x.sh"], "blocks.py", [1]):
        doc = json.loads(text)
        doc["code"] = bad
        with pytest.raises(GraphError, match="code"):
            Graph.from_json(json.dumps(doc))


def test_sharing_guide_runs(hub, tmp_path, monkeypatch, capsys):
    blocks = _python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_sharing_guide"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{DOC.name}[snippet {i}]", "exec"), namespace)
    assert "doc_square" in capsys.readouterr().out  # the refusal was printed, naming the block
    assert "you/squares" in hub.repos
