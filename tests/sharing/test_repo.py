"""Graph repos through huggingface_hub's real client and the local Hub server: push, pull at a
revision and at a branch, run; bad input and failed pushes leave nothing behind."""

from __future__ import annotations

import json

import pytest

from diffblocks.blocks import GraphError
from diffblocks.graph import Graph
from diffblocks.hub import HubError
from diffblocks.sharing import GraphRepoError, graph_origin

from tests.sharing.numeric import inc, numeric, scale


def test_push_then_pull_at_a_revision_and_at_a_branch(hub):
    first = numeric(2.0).push_to_hub("org/numeric", commit_message="first")
    repo = hub.repos["org/numeric"]
    assert repo.branches["main"] == first and repo.messages[first] == "first"
    assert set(repo.commits[first]) == {".gitattributes", "graph.json", "README.md"}
    commits = [p for m, p, _ in hub.requests if m == "POST" and "/commit/" in p]
    assert commits == ["/api/models/org/numeric/commit/main"]  # one commit for the whole graph

    second = numeric(5.0).push_to_hub("org/numeric", commit_message="second")
    dev = numeric(7.0).push_to_hub("org/numeric", branch="dev")
    assert len({first, second, dev}) == 3 and repo.branches["main"] == second

    assert Graph.from_pretrained("org/numeric")(x=1.0) == 10.0          # main: (1 + 1) * 5
    old = Graph.from_pretrained("org/numeric", revision=first)
    assert old(x=1.0) == 4.0 and graph_origin(old).commit == first
    assert Graph.from_pretrained("org/numeric", revision="dev")(x=1.0) == 14.0
    assert graph_origin(Graph.from_pretrained("org/numeric", revision="dev")).commit == dev


def test_save_pretrained_round_trips_through_a_folder(tmp_path):
    g = numeric(3.0)
    g.save_pretrained(tmp_path / "repo")
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["README.md", "graph.json"]
    back = Graph.from_pretrained(tmp_path / "repo")
    assert back.to_json() == g.to_json() and back(x=2.0) == 9.0
    assert graph_origin(back).repo is None and graph_origin(back).folder == (tmp_path / "repo").resolve()


def test_an_invalid_graph_is_refused_before_any_upload(hub, tmp_path):
    g = Graph("broken").add("inc", inc).add("mul", scale)
    g.expose_output("x", "mul.x")  # inc.x and mul.x are never fed
    with pytest.raises(GraphError, match="cannot be shared"):
        g.push_to_hub("org/broken")
    assert hub.repos == {} and hub.requests == []

    from diffblocks.cli import main

    bad = tmp_path / "bad.json"
    doc = json.loads(numeric().to_json())
    doc["graph"]["nodes"]["mul"]["block"] = "no_such_block"
    bad.write_text(json.dumps(doc))
    assert main(["push", str(bad), "org/broken"]) == 2  # a user mistake
    assert hub.repos == {} and hub.requests == []


@pytest.mark.parametrize("mode", ["500", "drop"])
def test_a_failed_commit_leaves_no_half_made_commit(hub, mode):
    first = numeric(2.0).push_to_hub("org/numeric")
    repo = hub.repos["org/numeric"]
    before = dict(repo.commits)
    hub.fail_commits, hub.fail_mode = 1, mode
    with pytest.raises(HubError, match="nothing was committed|no half-made commit"):
        numeric(9.0).push_to_hub("org/numeric")
    assert repo.branches["main"] == first and repo.commits == before
    assert Graph.from_pretrained("org/numeric")(x=1.0) == 4.0
    # A failed first push to a new repo: the repo exists (as after create_repo) but holds no graph.
    hub.fail_commits = 1
    with pytest.raises(HubError):
        numeric().push_to_hub("org/fresh")
    assert set(hub.repos["org/fresh"].commits[hub.repos["org/fresh"].branches["main"]]) == {".gitattributes"}


def test_pulling_a_repo_without_a_graph_says_so(hub, tmp_path, capsys):
    hub.add_repo("org/model", {"model_index.json": b"{}", "unet/config.json": b"{}"})
    with pytest.raises(GraphRepoError, match="holds no graph.json.*Pipeline.from_pretrained"):
        Graph.from_pretrained("org/model")
    from diffblocks.cli import main

    assert main(["pull", "org/model", "--out", str(tmp_path / "m")]) == 1
    assert "holds no graph.json" in capsys.readouterr().err and not (tmp_path / "m").exists()
    with pytest.raises(GraphRepoError, match="holds no graph.json"):
        Graph.from_pretrained(tmp_path)


def test_private_repos_need_the_token(hub):
    numeric().push_to_hub("org/secret", private=True, token="hf_owner")
    assert hub.repos["org/secret"].private_token == "hf_owner"
    with pytest.raises(HubError):
        Graph.from_pretrained("org/secret")
    assert Graph.from_pretrained("org/secret", token="hf_owner")(x=0.0) == 2.0


def test_cli_push_and_pull(hub, tmp_path, capsys):
    from diffblocks.cli import main

    path = tmp_path / "g.json"
    numeric(2.0).save(path)
    assert main(["push", str(path), "org/cli", "--branch", "exp", "--private", "--token", "t"]) == 0
    sha = hub.repos["org/cli"].branches["exp"]
    assert sha in capsys.readouterr().out and "main" in hub.repos["org/cli"].branches
    out = tmp_path / "pulled"
    assert main(["pull", "org/cli", "--revision", "exp", "--out", str(out), "--token", "t"]) == 0
    assert f"commit {sha}" in capsys.readouterr().out
    assert Graph.from_pretrained(out)(x=1.0) == 4.0
    assert "## Inputs" in (out / "README.md").read_text()


def test_a_pulled_graph_loads_offline_from_the_cache(hub, monkeypatch):
    from huggingface_hub import constants

    sha = numeric(2.0).push_to_hub("org/numeric")
    assert Graph.from_pretrained("org/numeric")(x=1.0) == 4.0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    served = len(hub.requests)
    offline = Graph.from_pretrained("org/numeric")
    assert offline(x=1.0) == 4.0 and graph_origin(offline).commit == sha and len(hub.requests) == served
