"""``diffblocks --help`` / ``--version`` import no torch; ``python -m diffblocks`` works (issue 14 item 6)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import sys
sys.argv = ["diffblocks", *{argv!r}]
from diffblocks.cli import main
try:
    main()
except SystemExit:
    pass
print("TORCH" if "torch" in sys.modules else "NO-TORCH", file=sys.stderr)
"""


def _python(code_or_args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *code_or_args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["run", "--help"], ["validate", "--help"]])
def test_help_and_version_do_not_import_torch(argv, tmp_path):
    done = _python(["-c", PROBE.format(argv=argv)], tmp_path)
    assert done.stderr.strip().endswith("NO-TORCH"), done.stderr
    assert "diffblocks" in done.stdout


def test_python_dash_m_diffblocks(tmp_path):
    done = _python(["-m", "diffblocks", "--version"], tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("diffblocks ")
    assert _python(["-m", "diffblocks", "presets"], tmp_path).stdout.count("sd15") >= 1
