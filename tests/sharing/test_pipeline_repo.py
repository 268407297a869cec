"""A preset-style pipeline shared as a graph-only repo: its index points at the tiny SD repo on
the same local Hub, pinned to the commit it was loaded from; `diffblocks run REPO` runs it and
`--replay` fetches the same graph even after the branch moved."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from diffblocks import Pipeline
from diffblocks.cli import main
from diffblocks.cli.run import read_png_metadata
from diffblocks.sharing import GraphRepoError

from tests.components.hub_server import folder_files

ARGS = {"prompt": "a cat", "num_inference_steps": 2, "output_type": "np", "progress": False, "seed": 0}


def _pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture
def preset_repo(hub, tiny_sd_dir):
    """org/tiny-sd (the weights) and org/my-preset (graph + index only, pushed from a pipeline)."""
    weights = hub.add_repo("org/tiny-sd", folder_files(tiny_sd_dir))
    pipe = Pipeline.from_pretrained("org/tiny-sd")
    sha = pipe.push_to_hub("org/my-preset", commit_message="share my preset")
    return pipe, weights.branches["main"], sha


def test_push_writes_graph_index_and_card_pinned_to_the_weights_commit(hub, preset_repo):
    pipe, weights_commit, sha = preset_repo
    files = hub.repos["org/my-preset"].commits[sha]
    assert {"graph.json", "modular_model_index.json", "README.md"} <= set(files)
    assert not any(p.endswith(".safetensors") for p in files)  # weights=False: pointers only
    index = json.loads(files["modular_model_index.json"])
    assert index["unet"][2]["pretrained_model_name_or_path"] == "org/tiny-sd"
    assert index["unet"][2]["revision"] == weights_commit and index["vae"][2]["revision"] == weights_commit
    card = files["README.md"].decode()
    assert card.startswith("---\nlibrary_name: diffblocks\n") and '- "org/tiny-sd"' in card
    assert "| `prompt` |" in card and "```mermaid" in card and "[org/tiny-sd]" in card
    assert json.loads(files["graph.json"]) == json.loads(pipe.graph.to_json())


def test_the_graph_only_repo_loads_the_pinned_weights(hub, preset_repo, tiny_sd_seed1_dir):
    pipe, weights_commit, _ = preset_repo
    hub.repos["org/tiny-sd"].commit(folder_files(tiny_sd_seed1_dir))  # the weights repo moves on
    again = Pipeline.from_pretrained("org/my-preset")
    assert again.components.specs["unet"].revision == weights_commit
    assert np.array_equal(again(**ARGS).images, pipe(**ARGS).images)
    moved = Pipeline.from_pretrained("org/tiny-sd")
    assert not np.array_equal(moved(**ARGS).images, pipe(**ARGS).images)


def test_push_with_weights_carries_them(hub, preset_repo):
    pipe, _, _ = preset_repo
    sha = pipe.push_to_hub("org/with-weights", weights=True)
    files = hub.repos["org/with-weights"].commits[sha]
    assert "unet/diffusion_pytorch_model.safetensors" in files
    index = json.loads(files["modular_model_index.json"])
    assert index["unet"][2]["pretrained_model_name_or_path"] is None and index["unet"][2]["subfolder"] == "unet"
    again = Pipeline.from_pretrained("org/with-weights")
    assert np.array_equal(again(**ARGS).images, pipe(**ARGS).images)


def test_a_pipeline_from_a_local_folder_cannot_point_others_at_it(hub, tiny_sd_dir):
    pipe = Pipeline.from_pretrained(tiny_sd_dir)
    with pytest.raises(GraphRepoError, match="local folder.*weights=True"):
        pipe.push_to_hub("org/nope")
    assert "org/nope" not in hub.repos


def test_run_a_repo_then_replay_after_the_branch_moved(hub, preset_repo, tmp_path, monkeypatch):
    _, _, first = preset_repo
    out = tmp_path / "cat.png"
    assert main(["run", "org/my-preset", "--prompt", "a cat", "--steps", "2", "--out", str(out), "--quiet"]) == 0
    meta = read_png_metadata(out)
    assert meta["inputs"]["graph_source"] == {"repo": "org/my-preset", "commit": first}
    assert meta["inputs"]["model"] == "org/my-preset" and meta["inputs"]["revision"] == first

    # A second push changes the graph on main (a different guidance default); replay must not see it.
    doc = json.loads(hub.repos["org/my-preset"].commits[first]["graph.json"])
    doc["graph"]["description"] = "changed"
    hub.repos["org/my-preset"].commit({**hub.repos["org/my-preset"].commits[first],
                                       "graph.json": json.dumps(doc).encode()})
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "fresh-cache"))  # replay downloads again
    hub.requests.clear()
    assert main(["run", "--replay", str(out), "--quiet"]) == 0
    assert np.array_equal(_pixels(tmp_path / "cat-replay.png"), _pixels(out))
    graph_gets = [p for m, p, _ in hub.requests if m == "GET" and p.endswith("/graph.json")]
    assert graph_gets and all(f"/resolve/{first}/" in p for p in graph_gets)


def test_the_preset_card_snippet_runs(hub, preset_repo, capsys):
    import re

    _, _, sha = preset_repo
    card = hub.repos["org/my-preset"].commits[sha]["README.md"].decode()
    (snippet,) = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    assert "Pipeline.from_pretrained('org/my-preset')" in snippet and "prompt=" in snippet
    # As written except for the step count (the preset's default of 50 would take seconds here).
    exec(compile(snippet.replace("seed=0", "seed=0, num_inference_steps=2"), "README.md", "exec"), {})
    assert "images" in capsys.readouterr().out
