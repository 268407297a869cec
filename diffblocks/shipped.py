"""Models that ship inside the package, addressed as ``diffblocks:<name>`` (torch-free).

``diffblocks:tiny-shapes`` is what ``diffblocks run`` uses by default and what its PNGs record
as their model, so ``Pipeline.from_pretrained("diffblocks:tiny-shapes")`` opens it too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["DEFAULT_MODEL", "SCHEME", "shipped_model_path", "resolve_model_source", "looks_like_repo_id"]

SCHEME = "diffblocks:"
#: The small text-to-image model in ``diffblocks/assets/tiny-shapes``.
DEFAULT_MODEL = "diffblocks:tiny-shapes"
_ASSETS = Path(__file__).resolve().parent / "assets"
# A Hub repo id: "name" or "owner/name", letters, digits, "-", "_", "." (no "..", no leading "/").
_REPO_ID = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")


def shipped_model_path(name: str) -> Path:
    """The folder of shipped model ``diffblocks:<name>`` (``FileNotFoundError`` naming the known ones)."""
    short = name.removeprefix(SCHEME)
    known = sorted(p.name for p in _ASSETS.iterdir() if (p / "model_index.json").is_file()) if _ASSETS.is_dir() else []
    if short not in known:
        raise FileNotFoundError(
            f"no shipped model {name!r}; shipped: {', '.join(SCHEME + k for k in known) or 'none in this install'}"
        )
    return _ASSETS / short


def looks_like_repo_id(text: str) -> bool:
    """True for ``owner/name`` (or ``name``) as the Hub spells repo ids; paths are not repo ids."""
    return bool(_REPO_ID.match(text))


def resolve_model_source(source: str | os.PathLike[str]) -> str:
    """A shipped name becomes its folder; a local path that does not exist and cannot be a Hub
    repo id is a ``FileNotFoundError`` naming it; anything else is returned as it is."""
    text = os.fspath(source)
    if text.startswith(SCHEME):
        return str(shipped_model_path(text))
    if Path(text).expanduser().exists() or looks_like_repo_id(text):
        return text
    raise FileNotFoundError(f"model folder '{text}' does not exist (and it is not a Hub repo id: owner/name)")
