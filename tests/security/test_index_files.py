"""Issue 21, items 7 and 8: index files cannot make loading leave the model folder, and hostile
index or config content ends in our documented errors (never a raw Python exception)."""

from __future__ import annotations

import json

import pytest
import torch

from diffblocks.components.loading import load_spec
from diffblocks.components import ComponentError, ComponentSpec, ComponentsManager
from diffblocks.components.index import IndexFileError, read_index
from diffblocks.models import AutoencoderKL, UNet2DConditionModel
from diffblocks.models.modeling import ModelConfigError, ModelLoadError
from tests.security.test_atomic_saves import VAE


@pytest.fixture()
def outside(tmp_path):
    """A model folder next to the pipeline folder that an index must not reach."""
    torch.manual_seed(0)
    AutoencoderKL.from_config(VAE).save_pretrained(tmp_path / "outside" / "vae")
    (tmp_path / "pipe").mkdir()
    return tmp_path / "pipe"


def _write(folder, name, data):
    (folder / name).write_text(json.dumps(data))


def test_modular_subfolder_cannot_climb_out(outside):
    _write(outside, "modular_model_index.json", {"vae": ["diffusers", "AutoencoderKL", {"subfolder": "../outside/vae"}]})
    with pytest.raises(IndexFileError, match=r"'vae' subfolder '../outside/vae' climbs out"):
        ComponentsManager.from_pretrained(outside)


@pytest.mark.parametrize("source", ["../outside", "./../outside", "sub/../../outside"])
def test_modular_relative_source_cannot_climb_out(outside, source):
    _write(outside, "modular_model_index.json", {"vae": ["diffusers", "AutoencoderKL", {"pretrained_model_name_or_path": source, "subfolder": "vae"}]})
    with pytest.raises(IndexFileError, match="climbs out"):
        read_index(outside)


def test_modular_absolute_subfolder_is_refused(outside):
    _write(outside, "modular_model_index.json", {"vae": ["diffusers", "AutoencoderKL", {"subfolder": str(outside.parent / "outside" / "vae")}]})
    with pytest.raises(IndexFileError, match="absolute path"):
        read_index(outside)


def test_classic_component_key_cannot_climb_out(outside):
    _write(outside, "model_index.json", {"_class_name": "StableDiffusionPipeline", "../outside/vae": ["diffusers", "AutoencoderKL"]})
    with pytest.raises(IndexFileError, match="climbs out"):
        ComponentsManager.from_pretrained(outside)


def test_a_spec_made_in_python_cannot_climb_out_either(outside):
    spec = ComponentSpec("vae", ("diffusers", "AutoencoderKL"), str(outside), subfolder="../outside/vae")
    with pytest.raises(ComponentError, match="climbs out"):
        load_spec(spec)


def test_a_hub_index_never_names_local_paths(outside):
    _write(outside, "modular_model_index.json", {"vae": ["diffusers", "AutoencoderKL", {"pretrained_model_name_or_path": str(outside.parent / "outside"), "subfolder": "vae"}]})
    with pytest.raises(IndexFileError, match="never a local path"):
        read_index(outside, source="org/repo")  # how the manager reads a Hub repo's index
    _write(outside, "modular_model_index.json", {"vae": ["diffusers", "AutoencoderKL", {"pretrained_model_name_or_path": "other/repo", "subfolder": "vae"}]})
    assert read_index(outside, source="org/repo").specs["vae"].pretrained_model_name_or_path == "other/repo"


def test_a_local_index_may_name_its_own_subfolders_and_absolute_references(outside):
    torch.manual_seed(0)
    AutoencoderKL.from_config(VAE).save_pretrained(outside / "vae")
    _write(outside, "modular_model_index.json", {
        "vae": ["diffusers", "AutoencoderKL", {"subfolder": "vae"}],
        "vae_ref": ["diffusers", "AutoencoderKL", {"pretrained_model_name_or_path": str(outside.parent / "outside"), "subfolder": "vae"}],
    })
    manager = ComponentsManager.from_pretrained(outside)
    assert isinstance(manager["vae"], AutoencoderKL) and isinstance(manager["vae_ref"], AutoencoderKL)


def test_variant_cannot_name_a_path(outside):
    _write(outside, "modular_model_index.json", {"vae": ["diffusers", "AutoencoderKL", {"subfolder": "vae", "variant": "../../x"}]})
    with pytest.raises(IndexFileError, match="plain tag"):
        read_index(outside)


@pytest.mark.parametrize("shard", ["../../outside/x.safetensors", "/etc/passwd", "..", "sub/x.safetensors"])
def test_shard_index_cannot_name_files_outside_the_model_folder(tmp_path, shard):
    folder = tmp_path / "vae"
    torch.manual_seed(0)
    AutoencoderKL.from_config(VAE).save_pretrained(folder, max_shard_size=20_000)
    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    data = json.loads(index.read_text())
    first = next(iter(data["weight_map"]))
    data["weight_map"][first] = shard
    index.write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="outside the model folder"):
        AutoencoderKL.from_pretrained(folder)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"_class_name": "\xff\xfe"}', "not UTF-8"),
        (b'{"_class_name": ["StableDiffusionPipeline"]}', "'_class_name' must be a string"),
        (b"[1, 2]", "must hold a JSON object"),
    ],
)
def test_hostile_index_content_gives_index_errors(tmp_path, content, message):
    (tmp_path / "model_index.json").write_bytes(content)
    with pytest.raises(IndexFileError, match=message):
        ComponentsManager.from_pretrained(tmp_path)


def test_the_scheduler_base_class_is_refused_when_resolved():
    spec = ComponentSpec.from_config("scheduler", ("diffusers", "Scheduler"), {})
    with pytest.raises(ComponentError, match="no diffblocks implementation"):
        load_spec(spec)
    with pytest.raises(ComponentError, match="no diffblocks implementation"):
        load_spec(ComponentSpec.from_config("scheduler", ("diffusers", "SchedulerMixin"), {}))


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"attention_head_dim": 0}, "attention_head_dim"),
        ({"norm_num_groups": 0}, "norm_num_groups"),
        ({"norm_num_groups": 5}, "block_out_channels"),  # GroupNorm cannot split 32 channels in 5
        ({"block_out_channels": "wide"}, "block_out_channels"),
        ({"layers_per_block": True}, "layers_per_block"),
        ({"cross_attention_dim": None}, "cross_attention_dim"),
        ({"down_block_types": []}, "down_block_types"),
        ({"sample_size": []}, "sample_size"),
    ],
)
def test_model_config_errors_name_the_key(changes, key):
    config = {"block_out_channels": [32, 64], "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
              "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "cross_attention_dim": 32, "attention_head_dim": 8,
              "norm_num_groups": 32, "layers_per_block": 1}
    with pytest.raises(ModelConfigError, match=rf"config key '{key}'"):
        with torch.device("meta"):
            UNet2DConditionModel.from_config({**config, **changes})


def test_a_model_config_file_with_hostile_content_gives_a_load_error(tmp_path):
    folder = tmp_path / "vae"
    folder.mkdir()
    for content in (b"\xff{}", b"[" * 100_000, b"[]"):
        (folder / "config.json").write_bytes(content)
        with pytest.raises(ModelLoadError):
            AutoencoderKL.load_config(folder)
