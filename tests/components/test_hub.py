"""Hub access with huggingface_hub's real client against a local fixture Hub (tests/components/hub_server.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from huggingface_hub import hf_hub_download
from safetensors.torch import load_file

from diffblocks.components import ComponentError, ComponentsManager
from diffblocks.hub import HubError, resolve_commit, snapshot_download_pinned
from tests.components.hub_server import HubServer, folder_files

REPO = "org/tiny-sd"
INDEX_ONLY = ["model_index.json"]


def _same(module: torch.nn.Module, folder: Path, sub: str) -> bool:
    saved = load_file(next((folder / sub).glob("*.safetensors")))
    state = module.state_dict()
    return all(torch.equal(state[k].to(v.dtype), v) for k, v in saved.items())


def test_download_at_a_branch_fetches_only_what_is_used(hub: HubServer, tiny_sd_dir: Path, tmp_path: Path):
    hub.add_repo(REPO, folder_files(tiny_sd_dir))
    manager = ComponentsManager.from_pretrained(REPO, cache_dir=tmp_path)
    assert hub.downloaded() == INDEX_ONLY and set(manager) == {"unet", "vae", "text_encoder", "tokenizer", "scheduler"}
    assert _same(manager["unet"], tiny_sd_dir, "unet")
    assert sorted(hub.downloaded()) == sorted(INDEX_ONLY + ["unet/config.json", "unet/diffusion_pytorch_model.safetensors"])
    manager["tokenizer"]
    manager["scheduler"]
    assert "vae/diffusion_pytorch_model.safetensors" not in hub.downloaded()
    assert f"{REPO}@" in manager.table()


def test_download_at_a_commit_and_at_another_branch(hub: HubServer, tiny_sd_dir: Path, tiny_sd_seed1_dir: Path, tmp_path: Path):
    repo = hub.add_repo(REPO)
    first = repo.commit(folder_files(tiny_sd_dir))
    repo.commit(folder_files(tiny_sd_seed1_dir), branch="dev")
    assert resolve_commit(REPO, revision="dev", cache_dir=tmp_path) == repo.branches["dev"]
    at_sha = ComponentsManager.from_pretrained(REPO, revision=first, cache_dir=tmp_path)
    dev = ComponentsManager.from_pretrained(REPO, revision="dev", cache_dir=tmp_path)
    assert _same(at_sha["vae"], tiny_sd_dir, "vae") and _same(dev["vae"], tiny_sd_seed1_dir, "vae")
    assert not any(path.startswith(f"/api/models/{REPO}/revision/{first}") for _, path, _ in hub.requests)


def test_manager_pins_the_commit_across_lazy_loads(hub: HubServer, tiny_sd_dir: Path, tiny_sd_seed1_dir: Path, tmp_path: Path):
    repo = hub.add_repo(REPO, folder_files(tiny_sd_dir))
    manager = ComponentsManager.from_pretrained(REPO, cache_dir=tmp_path)
    manager["unet"]
    repo.commit(folder_files(tiny_sd_seed1_dir))  # someone pushes to main
    assert _same(manager["vae"], tiny_sd_dir, "vae"), "the VAE came from the new commit"
    fresh = ComponentsManager.from_pretrained(REPO, cache_dir=tmp_path)
    assert _same(fresh["vae"], tiny_sd_seed1_dir, "vae")


def test_a_push_between_lookup_and_download_cannot_mix_commits(hub: HubServer, tmp_path: Path):
    repo = hub.add_repo("org/moving", {"a/config.json": b'{"v": 1}', "b/config.json": b'{"v": 1}'})
    old = repo.branches["main"]

    def push_once(r):
        hub.after_info = None
        r.commit({"a/config.json": b'{"v": 2}', "b/config.json": b'{"v": 2}'})

    hub.after_info = push_once
    folder = snapshot_download_pinned("org/moving", cache_dir=tmp_path)
    assert folder.name == old
    assert (folder / "a/config.json").read_bytes() == (folder / "b/config.json").read_bytes() == b'{"v": 1}'
    # What an unpinned, file-by-file download does now: it gets the new commit's file.
    late = hf_hub_download("org/moving", "b/config.json", cache_dir=tmp_path, endpoint=hub.url)
    assert Path(late).read_bytes() == b'{"v": 2}'


def test_offline_mode_reuses_the_cache(hub: HubServer, tiny_sd_dir: Path, tmp_path: Path, monkeypatch):
    hub.add_repo(REPO, folder_files(tiny_sd_dir))
    online = ComponentsManager.from_pretrained(REPO, cache_dir=tmp_path)
    online["unet"]
    seen = len(hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = ComponentsManager.from_pretrained(REPO, cache_dir=tmp_path, share=False)
    assert _same(offline["unet"], tiny_sd_dir, "unet")
    assert len(hub.requests) == seen, hub.requests[seen:]
    with pytest.raises(ComponentError, match=r"component 'vae'.*(incomplete|not in the local cache)"):
        offline["vae"]
    assert len(hub.requests) == seen
    monkeypatch.delenv("HF_HUB_OFFLINE")
    local_only = ComponentsManager.from_pretrained(REPO, cache_dir=tmp_path, local_files_only=True, share=False)
    assert _same(local_only["unet"], tiny_sd_dir, "unet") and len(hub.requests) == seen


def test_offline_without_cache_is_a_clear_error(hub: HubServer, tmp_path: Path, monkeypatch):
    hub.add_repo(REPO, {"model_index.json": b"{}"})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match=f"cannot resolve '{REPO}' at revision 'main'.*network access"):
        ComponentsManager.from_pretrained(REPO, cache_dir=tmp_path)
    assert hub.requests == []


def test_token_is_sent(hub: HubServer, tiny_sd_dir: Path, tmp_path: Path):
    hub.add_repo("org/private", folder_files(tiny_sd_dir), private_token="secret")
    with pytest.raises(HubError, match="org/private"):
        ComponentsManager.from_pretrained("org/private", cache_dir=tmp_path, token=False)
    manager = ComponentsManager.from_pretrained("org/private", cache_dir=tmp_path, token="secret")
    assert _same(manager["vae"], tiny_sd_dir, "vae")
    assert {auth for _, path, auth in hub.requests if "/resolve/" in path} == {"Bearer secret"}


def test_variant_downloads_only_the_variant_weights(hub: HubServer, tiny_sd_dir: Path, tmp_path: Path):
    files = folder_files(tiny_sd_dir)
    weights = files["vae/diffusion_pytorch_model.safetensors"]
    files["vae/diffusion_pytorch_model.fp16.safetensors"] = weights
    files["vae/diffusion_pytorch_model.bin"] = b"pickle weights that must never be fetched"
    hub.add_repo(REPO, files)
    from diffblocks.components import ComponentSpec

    spec = ComponentSpec("vae", ("diffusers", "AutoencoderKL"), REPO, "vae", variant="fp16")
    manager = ComponentsManager([spec], cache_dir=tmp_path)
    assert _same(manager["vae"], tiny_sd_dir, "vae")
    got = [p for p in hub.downloaded() if p.startswith("vae/")]
    assert sorted(got) == ["vae/config.json", "vae/diffusion_pytorch_model.fp16.safetensors"]
    plain = ComponentsManager([spec.with_updates(variant=None)], cache_dir=tmp_path)
    plain["vae"]
    assert "vae/diffusion_pytorch_model.bin" not in hub.downloaded()
    assert "vae/diffusion_pytorch_model.safetensors" in hub.downloaded()


def test_missing_subfolder_on_the_hub(hub: HubServer, tiny_sd_dir: Path, tmp_path: Path):
    files = {k: v for k, v in folder_files(tiny_sd_dir).items() if not k.startswith("vae/")}
    hub.add_repo(REPO, files)
    manager = ComponentsManager.from_pretrained(REPO, cache_dir=tmp_path)
    with pytest.raises(ComponentError, match=r"component 'vae'.*no files in subfolder 'vae'.*Fix the subfolder"):
        manager["vae"]


def test_repo_without_index(hub: HubServer, tmp_path: Path):
    hub.add_repo("org/empty", {"README.md": b"hi"})
    from diffblocks.components import IndexFileError

    with pytest.raises(IndexFileError, match="org/empty.*neither modular_model_index.json nor model_index.json"):
        ComponentsManager.from_pretrained("org/empty", cache_dir=tmp_path)


def test_repo_code_is_neither_downloaded_nor_run_without_trust(hub: HubServer, tmp_path: Path):
    import json

    from diffblocks.registry.trust import UntrustedCodeError

    code = (
        "class MySched:\n"
        "    @classmethod\n"
        "    def from_pretrained(cls, path, subfolder=None):\n"
        "        obj = cls(); obj.where = subfolder; return obj\n"
    )
    hub.add_repo("org/custom", {
        "model_index.json": json.dumps({"_class_name": "X", "scheduler": ["my_sched", "MySched"]}).encode(),
        "scheduler/scheduler_config.json": b"{}",
        "scheduler/my_sched.py": code.encode(),
    })
    manager = ComponentsManager.from_pretrained("org/custom", cache_dir=tmp_path)
    with pytest.raises(UntrustedCodeError, match="component 'scheduler'"):
        manager["scheduler"]
    assert not any(p.endswith(".py") for p in hub.downloaded())
    trusted = ComponentsManager.from_pretrained("org/custom", cache_dir=tmp_path, trust_remote_code=True)
    assert trusted["scheduler"].where == "scheduler"
    assert "scheduler/my_sched.py" in hub.downloaded()
