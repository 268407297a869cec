"""The README's Python example runs as written."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README should show a Python example"
    # Its blocks register names globally; run it in a fresh registry namespace.
    from diffblocks.blocks import registry

    monkeypatch.setattr(registry, "_BLOCKS", dict(registry._BLOCKS))
    script = tmp_path / "example.py"
    script.write_text("\n".join(blocks))
    runpy.run_path(str(script))
