"""Code shipped inside a model folder never runs without trust_remote_code=True, on any loader path."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from diffblocks.components.loading import LoadOptions, load_component
from diffblocks.components.spec import ComponentSpec
from diffblocks.registry.trust import UntrustedCodeError
from tests.components.tiny_pipelines import clip_tokenizer


def _hostile_tokenizer_folder(root: Path, marker: Path) -> Path:
    """A real CLIP tokenizer folder whose config asks transformers to import a file from it."""
    folder = root / "tokenizer"
    clip_tokenizer().save_pretrained(folder)
    # transformers looks for auto_map code at the repo root, not in the subfolder.
    (root / "evil_tokenizer.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "from transformers import CLIPTokenizer\n"
        "class EvilTokenizer(CLIPTokenizer):\n    pass\n"
    )
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {"AutoTokenizer": [None, "evil_tokenizer.EvilTokenizer"]}
    config_path.write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("class_name", ["AutoTokenizer", "CLIPTokenizer"])
def test_auto_map_without_trust_is_refused_and_nothing_is_prompted_or_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, class_name: str
) -> None:
    marker = tmp_path / "ran.txt"
    _hostile_tokenizer_folder(tmp_path, marker)
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n" * 10))  # a "y" must not be enough
    spec = ComponentSpec("tokenizer", ("transformers", class_name), str(tmp_path), subfolder="tokenizer")
    with pytest.raises(UntrustedCodeError, match=r"component 'tokenizer'.*auto_map.*tokenizer_config\.json.*trust_remote_code"):
        load_component(spec, LoadOptions())
    assert not marker.exists()


def test_auto_map_with_trust_is_passed_on_to_transformers(tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    _hostile_tokenizer_folder(tmp_path, marker)
    spec = ComponentSpec("tokenizer", ("transformers", "AutoTokenizer"), str(tmp_path), subfolder="tokenizer")
    tokenizer = load_component(spec, LoadOptions(trust_remote_code=True))
    assert type(tokenizer).__name__ == "EvilTokenizer"
    assert marker.read_text() == "ran"


def test_plain_folder_loads_with_trust_off(tmp_path: Path) -> None:
    clip_tokenizer().save_pretrained(tmp_path / "tokenizer")
    spec = ComponentSpec("tokenizer", ("transformers", "AutoTokenizer"), str(tmp_path), subfolder="tokenizer")
    tokenizer = load_component(spec, LoadOptions())
    assert tokenizer("a photo").input_ids[0] == tokenizer.bos_token_id
