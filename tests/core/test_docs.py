"""docs/blocks.md is a runnable guide: execute its python snippets in order."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "blocks.md"


def test_blocks_guide_runs(capsys):
    text = DOC.read_text(encoding="utf-8")
    snippets = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(snippets) >= 8
    namespace: dict = {"__name__": "docs_blocks_guide"}
    from diffblocks.blocks.registry import _BLOCKS

    before = set(_BLOCKS)
    try:
        for i, code in enumerate(snippets):
            exec(compile(code, f"{DOC.name}[snippet {i}]", "exec"), namespace)
    finally:
        for name in set(_BLOCKS) - before:
            del _BLOCKS[name]
