"""Issue 21, item 3: a save that fails half-way leaves the previous file or folder loadable."""

from __future__ import annotations

import json
import os

import pytest
import torch

from diffblocks.components import ComponentSpec
from diffblocks.components.index import read_modular_index, write_modular_index
from diffblocks.fileio import FileWriteError
from diffblocks.models.autoencoder_kl import AutoencoderKL
from diffblocks.schedulers import EulerDiscreteScheduler

VAE = {"block_out_channels": [8, 16], "down_block_types": ["DownEncoderBlock2D"] * 2,
       "up_block_types": ["UpDecoderBlock2D"] * 2, "norm_num_groups": 4, "latent_channels": 4, "layers_per_block": 1}


def _vae(seed: int) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL.from_config(VAE)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def _disk_full(*args, **kwargs):
    raise OSError(28, "No space left on device")


def test_model_save_failing_in_the_weights_writer_keeps_the_old_folder(tmp_path, monkeypatch):
    folder = tmp_path / "vae"
    old = _vae(0)
    old.save_pretrained(folder)
    (folder / "README.md").write_text("kept")
    before = sorted(p.name for p in folder.iterdir())
    monkeypatch.setattr("diffblocks.models.modeling.save_file", _disk_full)
    with pytest.raises(OSError, match="No space left"):
        _vae(1).save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == before
    assert _same(AutoencoderKL.from_pretrained(folder), old)
    assert [p.name for p in tmp_path.iterdir()] == ["vae"]  # no temporary folder left behind


def test_sharded_save_failing_half_way_keeps_the_old_shards(tmp_path, monkeypatch):
    folder = tmp_path / "vae"
    old = _vae(0)
    old.save_pretrained(folder, max_shard_size=20_000)
    assert (folder / "diffusion_pytorch_model.safetensors.index.json").is_file()
    from diffblocks.models import modeling

    real, calls = modeling.save_file, []

    def second_shard_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            _disk_full()
        return real(*args, **kwargs)

    monkeypatch.setattr(modeling, "save_file", second_shard_fails)
    with pytest.raises(OSError):
        _vae(1).save_pretrained(folder, max_shard_size=20_000)
    assert _same(AutoencoderKL.from_pretrained(folder), old)


def test_model_save_replaces_an_old_layout_and_keeps_other_files(tmp_path):
    folder = tmp_path / "vae"
    _vae(0).save_pretrained(folder, max_shard_size=20_000)
    _vae(0).save_pretrained(folder, variant="fp16")
    (folder / "notes.txt").write_text("mine")
    new = _vae(1)
    new.save_pretrained(folder)  # one file now: the old shards must not shadow it
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["config.json", "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.safetensors", "notes.txt"]
    assert _same(AutoencoderKL.from_pretrained(folder), new)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_model_save_into_a_read_only_folder_keeps_it(tmp_path):
    folder = tmp_path / "vae"
    old = _vae(0)
    old.save_pretrained(folder)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(OSError):
            _vae(1).save_pretrained(folder)
    finally:
        tmp_path.chmod(0o755)
    assert _same(AutoencoderKL.from_pretrained(folder), old)


def test_index_write_failing_keeps_the_old_index(tmp_path, monkeypatch):
    spec = ComponentSpec("unet", ("diffusers", "UNet2DConditionModel"), "some/repo", subfolder="unet")
    path = write_modular_index(tmp_path, [spec])
    before = path.read_bytes()
    monkeypatch.setattr("diffblocks.fileio.os.fsync", _disk_full)
    with pytest.raises(FileWriteError, match="No space left"):
        write_modular_index(tmp_path, [spec.with_updates(subfolder="other")])
    assert path.read_bytes() == before
    assert read_modular_index(path).specs["unet"].subfolder == "unet"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["modular_model_index.json"]


def test_scheduler_config_write_failing_keeps_the_old_file(tmp_path, monkeypatch):
    EulerDiscreteScheduler().save_pretrained(tmp_path)
    before = (tmp_path / "scheduler_config.json").read_bytes()
    monkeypatch.setattr("diffblocks.fileio.os.fsync", _disk_full)
    with pytest.raises(FileWriteError):
        EulerDiscreteScheduler(num_train_timesteps=500).save_pretrained(tmp_path)
    assert (tmp_path / "scheduler_config.json").read_bytes() == before
    assert json.loads(before)["num_train_timesteps"] == 1000
