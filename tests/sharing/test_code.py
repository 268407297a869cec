"""Custom blocks from a repo: imported only with trust_remote_code=True, on every path, pinned to
the resolved commit; without trust, no file of the repo is imported (asserted by a marker file
the code would write)."""

from __future__ import annotations

import contextlib
import io

import json

import pytest

from diffblocks.blocks import GraphError
from diffblocks.graph import Graph
from diffblocks.registry.trust import UntrustedCodeError
from diffblocks.sharing import graph_origin

from tests.sharing.conftest import code_file, custom_graph_json


def _folder(tmp_path, marker, name="share_triple", code=("blocks.py",), factor=3.0):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "blocks.py").write_text(code_file(marker, name, factor))
    (repo / "graph.json").write_text(custom_graph_json(name, list(code)))
    return repo


def test_a_folder_needs_trust_and_the_error_names_blocks_files_and_flag(tmp_path):
    marker = tmp_path / "marker"
    repo = _folder(tmp_path, marker)
    with pytest.raises(UntrustedCodeError) as err:
        Graph.from_pretrained(repo)
    text = str(err.value)
    assert "'share_triple'" in text and "'blocks.py'" in text and "trust_remote_code=True" in text
    assert not marker.exists()
    g = Graph.from_pretrained(repo, trust_remote_code=True)
    assert marker.read_text() == "imported"
    assert g(x=1.0) == 6.0 and g.code == ["blocks.py"]
    assert json.loads(g.to_json())["code"] == ["blocks.py"]


def test_a_hub_repo_needs_trust_and_nothing_is_downloaded_or_imported_without_it(hub, tmp_path):
    marker = tmp_path / "marker"
    files = {"graph.json": custom_graph_json("share_hub", ["pkg/blocks.py"]).encode(),
             "pkg/blocks.py": code_file(marker, "share_hub").encode()}
    hub.add_repo("org/custom", files)
    with pytest.raises(UntrustedCodeError, match=r"'share_hub'.*'pkg/blocks.py'.*trust_remote_code=True"):
        Graph.from_pretrained("org/custom")
    assert not marker.exists() and "pkg/blocks.py" not in hub.downloaded()
    g = Graph.from_pretrained("org/custom", trust_remote_code=True)
    assert marker.exists() and g(x=2.0) == 9.0
    # Pushing it again carries the code file from the folder it was loaded from.
    g.push_to_hub("org/copy")
    copy = hub.repos["org/copy"]
    assert copy.commits[copy.branches["main"]]["pkg/blocks.py"] == files["pkg/blocks.py"]


def test_code_cannot_be_swapped_between_resolve_and_download(hub, tmp_path):
    """The branch moves right after the revision is resolved: graph and code still come from the
    first commit (the second commit's code would write another marker and scale by 100)."""
    first_marker, second_marker = tmp_path / "first", tmp_path / "second"
    repo = hub.add_repo("org/moving", {"graph.json": custom_graph_json("share_moving", ["blocks.py"]).encode(),
                                       "blocks.py": code_file(first_marker, "share_moving", 3.0).encode()})
    first = repo.branches["main"]
    evil = {"graph.json": custom_graph_json("share_moving", ["blocks.py", "more.py"]).encode(),
            "blocks.py": code_file(second_marker, "share_moving", 100.0).encode(),
            "more.py": code_file(second_marker, "share_more").encode()}

    def move(r):
        if r.branches["main"] == first:
            r.commit(evil)

    hub.after_info = move
    g = Graph.from_pretrained("org/moving", trust_remote_code=True)
    assert repo.branches["main"] != first  # the branch did move during the load
    assert graph_origin(g).commit == first and g.code == ["blocks.py"]
    assert g(x=1.0) == 6.0
    assert first_marker.exists() and not second_marker.exists()


@pytest.mark.parametrize("bad", ["../outside.py", "/etc/evil.py", "pkg/../../x.py", ".hidden/x.py", "x.txt", "a\\b.py"])
def test_code_paths_must_stay_inside_the_repo(tmp_path, bad):
    marker = tmp_path / "marker"
    repo = _folder(tmp_path, marker)
    (tmp_path / "outside.py").write_text(code_file(marker, "share_triple"))
    doc = json.loads((repo / "graph.json").read_text())
    doc["code"] = [bad]
    (repo / "graph.json").write_text(json.dumps(doc))
    with pytest.raises(GraphError) as err:
        Graph.from_pretrained(repo, trust_remote_code=True)
    assert "code[0]" in str(err.value)
    assert not marker.exists()


def test_a_link_leading_outside_the_repo_is_refused(tmp_path):
    marker = tmp_path / "marker"
    repo = _folder(tmp_path, marker)
    (tmp_path / "outside.py").write_text(code_file(marker, "share_triple"))
    (repo / "blocks.py").unlink()
    (repo / "blocks.py").symlink_to(tmp_path / "outside.py")
    with pytest.raises(GraphError, match="outside the repo"):
        Graph.from_pretrained(repo, trust_remote_code=True)
    assert not marker.exists()


def test_an_unknown_block_says_which_and_where_it_might_come_from(tmp_path):
    marker = tmp_path / "marker"
    repo = _folder(tmp_path, marker, name="share_elsewhere", code=())
    (repo / "extra.py").write_text("# registers 'share_elsewhere'\n")
    with pytest.raises(GraphError) as err:
        Graph.from_pretrained(repo)
    text = str(err.value)
    assert "'share_elsewhere'" in text and "node mine" in text and "extra.py" in text
    assert "code" in text and "diffblocks.blocks" in text
    assert not marker.exists()  # blocks.py is not in the code list: never imported


def test_a_repo_file_that_registers_nothing_useful_is_named(tmp_path):
    marker = tmp_path / "marker"
    repo = _folder(tmp_path, marker, name="share_other")
    doc = json.loads((repo / "graph.json").read_text())
    doc["graph"]["nodes"]["mine"]["block"] = "share_missing"
    (repo / "graph.json").write_text(json.dumps(doc))
    with pytest.raises(GraphError, match=r"'share_missing'.*none of the graph's code files \['blocks.py'\]"):
        Graph.from_pretrained(repo, trust_remote_code=True)


def test_pipeline_from_a_local_folder_with_code_needs_trust(tmp_path):
    from diffblocks import Pipeline

    marker = tmp_path / "marker"
    repo = _folder(tmp_path, marker)
    (repo / "modular_model_index.json").write_text(json.dumps({"_class_name": "ModularPipeline"}))
    with pytest.raises(UntrustedCodeError, match="share_triple"):
        Pipeline.from_pretrained(repo)
    assert not marker.exists()
    pipe = Pipeline.from_pretrained(repo, trust_remote_code=True)
    assert pipe(x=1.0).outputs["x"] == 6.0 and marker.exists()


def test_component_code_from_another_repo_needs_trust(hub, tmp_path):
    """A graph-only repo whose index names a component in another repo that ships its own class."""
    from diffblocks import Pipeline
    from diffblocks.components import ComponentError

    marker = tmp_path / "component-marker"
    model_code = f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\nclass Thing:\n    pass\n"
    hub.add_repo("org/weird-model", {"thing/config.json": b"{}", "thing/my_lib.py": model_code.encode(),
                                     "thing/model.safetensors": b"0"})
    index = {"_class_name": "ModularPipeline",
             "thing": ["my_lib", "Thing", {"pretrained_model_name_or_path": "org/weird-model", "subfolder": "thing"}]}
    g = Graph("uses_thing")
    from diffblocks.blocks import block

    @block("share_uses_thing", components={"thing": "my_lib.Thing"}, output_name="x")
    def uses_thing(thing: object, x: float = 1.0) -> float:
        return x

    g.add("use", uses_thing).expose_output("x", "use.x")
    g.push_to_hub("org/graph-only", extra_files={"modular_model_index.json": json.dumps(index).encode()})
    pipe = Pipeline.from_pretrained("org/graph-only")
    with pytest.raises(UntrustedCodeError):
        pipe()
    assert not marker.exists()
    with pytest.raises(ComponentError):
        Pipeline.from_pretrained("org/graph-only", trust_remote_code=True)()  # trusted: imported, then fails to load
    assert marker.exists()


def _cfg_copy_code(marker) -> str:
    """Repo code registering a copy of the shipped CFG block as 'share_cfg' (and writing a marker)."""
    return (
        "import copy\nfrom pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('imported')\n"
        "from diffblocks.registry import get_block, register_block\n"
        "blk = copy.copy(get_block('apply_cfg'))\nblk.name = 'share_cfg'\nregister_block(blk)\n"
    )


def test_cli_run_and_replay_of_a_folder_with_code_need_the_flag_every_time(tiny_sd_dir, tmp_path, monkeypatch):
    import sys

    import numpy as np
    from PIL import Image

    from diffblocks.cli import main
    from diffblocks.presets import load_preset
    from diffblocks.registry import blocks as registry

    marker = tmp_path / "marker"
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "blocks.py").write_text(_cfg_copy_code(marker))
    doc = json.loads(load_preset("sd15").to_json())
    doc["graph"]["nodes"]["denoise"]["loop"]["body"]["nodes"]["guidance"]["block"] = "share_cfg"
    doc["code"] = ["blocks.py"]
    (repo / "graph.json").write_text(json.dumps(doc))
    out = tmp_path / "img.png"
    argv = ["run", str(repo), "--model", str(tiny_sd_dir), "--prompt", "a cat", "--steps", "2", "--out", str(out), "--quiet"]
    assert _refused(argv, "share_cfg.*blocks.py.*--trust-remote-code")
    assert not marker.exists() and not out.exists()
    assert main(argv + ["--trust-remote-code"]) == 0 and marker.exists()

    # A fresh process: the block and its module are gone; the replay must import the code again.
    marker.unlink()
    registry.unregister_block("share_cfg")
    for name in [m for m in sys.modules if m.startswith("diffblocks_remote_blocks_")]:
        monkeypatch.delitem(sys.modules, name)
    assert _refused(["run", "--replay", str(out), "--quiet"], "trust")
    assert not marker.exists()
    assert main(["run", "--replay", str(out), "--quiet", "--trust-remote-code"]) == 0 and marker.exists()
    with Image.open(out) as a, Image.open(tmp_path / "img-replay.png") as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))


def _refused(argv: list[str], pattern: str) -> bool:
    """The CLI refuses a user mistake with exit 2 and one error line matching ``pattern``."""
    import re

    from diffblocks.cli import main

    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        code = main(argv)
    return code == 2 and re.search(pattern, errors.getvalue()) is not None and "Traceback" not in errors.getvalue()


INDEX = json.dumps({"_class_name": "ModularPipeline"}).encode()


def _coded_repo(hub, marker, name="share_paths", factor=3.0):
    return hub.add_repo("org/coded", {"graph.json": custom_graph_json(name, ["blocks.py"]).encode(),
                                      "blocks.py": code_file(marker, name, factor).encode(),
                                      "modular_model_index.json": INDEX})


def _untrusted_paths(tmp_path):
    from diffblocks import Pipeline
    from diffblocks.cli import main

    def cli_run():
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors):
            code = main(["run", "org/coded", "--prompt", "x", "--out", str(tmp_path / "o.png"), "--quiet"])
        if code != 0:
            raise SystemExit(errors.getvalue())

    return {
        "Graph.from_pretrained(repo)": lambda: Graph.from_pretrained("org/coded"),
        "Pipeline.from_pretrained(repo)": lambda: Pipeline.from_pretrained("org/coded"),
        "diffblocks run REPO": cli_run,
    }


@pytest.mark.parametrize("path", ["Graph.from_pretrained(repo)", "Pipeline.from_pretrained(repo)", "diffblocks run REPO"])
def test_no_path_imports_repo_code_without_trust(hub, tmp_path, path):
    marker = tmp_path / "marker"
    _coded_repo(hub, marker)
    with pytest.raises((UntrustedCodeError, SystemExit), match=r"share_paths.*blocks\.py.*trust"):
        _untrusted_paths(tmp_path)[path]()
    assert not marker.exists() and "blocks.py" not in hub.downloaded()


def test_pull_and_push_never_import_code(hub, tmp_path, capsys):
    from diffblocks.cli import main

    marker = tmp_path / "marker"
    _coded_repo(hub, marker)
    out = tmp_path / "pulled"
    assert main(["pull", "org/coded", "--out", str(out)]) == 0
    assert (out / "blocks.py").is_file() and not marker.exists()
    assert "['blocks.py']" in capsys.readouterr().err
    before = len(hub.requests)
    assert main(["push", str(out), "org/again"]) == 1  # validating it would need the code: refused
    assert "trust_remote_code=True" in capsys.readouterr().err
    assert not marker.exists() and "org/again" not in hub.repos and len(hub.requests) == before
    assert main(["push", str(out), "org/again", "--trust-remote-code"]) == 0 and marker.exists()
    pushed = hub.repos["org/again"]
    assert set(pushed.commits[pushed.branches["main"]]) >= {"graph.json", "blocks.py", "modular_model_index.json", "README.md"}


def test_pipeline_code_is_pinned_to_the_index_commit(hub, tmp_path):
    from diffblocks import Pipeline

    first_marker, second_marker = tmp_path / "first", tmp_path / "second"
    repo = _coded_repo(hub, first_marker, "share_pinned", 3.0)
    first = repo.branches["main"]

    def move(r):
        if r.branches["main"] == first:
            r.commit({**r.commits[first], "blocks.py": code_file(second_marker, "share_pinned", 100.0).encode()})

    hub.after_info = move
    pipe = Pipeline.from_pretrained("org/coded", trust_remote_code=True)
    assert repo.branches["main"] != first
    assert pipe(x=1.0).outputs["x"] == 6.0 and first_marker.exists() and not second_marker.exists()


def test_an_unknown_block_in_a_hub_repo_points_at_its_unlisted_python_files(hub, tmp_path):
    marker = tmp_path / "marker"
    doc = json.loads(custom_graph_json("share_nowhere", []))
    doc["graph"]["outputs"]["y"] = "nope.y"  # a second, unrelated problem is reported too
    hub.add_repo("org/forgot", {"graph.json": json.dumps(doc).encode(),
                                "extra/blocks.py": code_file(marker, "share_nowhere").encode()})
    with pytest.raises(GraphError) as err:
        Graph.from_pretrained("org/forgot", trust_remote_code=True)
    text = str(err.value)
    assert "'share_nowhere'" in text and "['extra/blocks.py']" in text and "nope" in text
    assert not marker.exists() and "extra/blocks.py" not in hub.downloaded()


def test_two_commits_of_one_repo_in_one_process_each_get_their_own_code(hub, tmp_path):
    marker = tmp_path / "marker"
    repo = hub.add_repo("org/evolving", {"graph.json": custom_graph_json("share_evolving", ["blocks.py"]).encode(),
                                         "blocks.py": code_file(marker, "share_evolving", 3.0).encode()})
    first = repo.branches["main"]
    second = repo.commit({**repo.commits[first], "blocks.py": code_file(marker, "share_evolving", 5.0).encode()})
    v1 = Graph.from_pretrained("org/evolving", revision=first, trust_remote_code=True)
    v2 = Graph.from_pretrained("org/evolving", revision=second, trust_remote_code=True)
    again = Graph.from_pretrained("org/evolving", revision=first, trust_remote_code=True)  # module cached: not rerun
    assert (v1(x=1.0), v2(x=1.0), again(x=1.0), v1(x=1.0)) == (6.0, 10.0, 6.0, 6.0)
