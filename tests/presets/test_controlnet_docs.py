"""docs/controlnet.md's Python example runs as written."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "controlnet.md"


def test_controlnet_doc_example_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks
    script = tmp_path / "example.py"
    script.write_text("\n".join(blocks))
    result = runpy.run_path(str(script))
    assert result["image"].size == (64, 64)
    assert "controlnet" in result["pipe"].graph.nodes["denoise"].body.nodes
