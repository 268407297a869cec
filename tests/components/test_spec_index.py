"""ComponentSpec identity and the index files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from diffblocks.components.loading import load_spec
from diffblocks.components import (
    ComponentError,
    ComponentSpec,
    IndexFileError,
    read_index,
    read_model_index,
    read_modular_index,
    write_modular_index,
)

UNET = ("diffusers", "UNet2DConditionModel")


# -- ComponentSpec ------------------------------------------------------------------------------
def test_spec_equality_is_identity_not_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    a = ComponentSpec("unet", UNET, str(tmp_path), "unet")
    b = ComponentSpec("denoiser", UNET, str(tmp_path), "unet")
    assert a == b and hash(a) == hash(b)
    monkeypatch.chdir(tmp_path.parent)
    assert ComponentSpec("unet", UNET, f"./{tmp_path.name}", "unet") == a  # relative == absolute
    assert ComponentSpec("unet", UNET, str(tmp_path), "unet", revision="main") == a  # no revision for local
    assert ComponentSpec("unet", UNET, str(tmp_path), "unet", variant="fp16") != a
    assert ComponentSpec("unet", UNET, "org/repo", "unet", revision="v1") != ComponentSpec(
        "unet", UNET, "org/repo", "unet", revision="v2")
    assert len({a, b}) == 1


def test_spec_validation_and_frozen_config():
    with pytest.raises(ComponentError, match="type_hint must be"):
        ComponentSpec("unet", ("diffusers",))  # type: ignore[arg-type]
    with pytest.raises(ComponentError, match="non-empty string name"):
        ComponentSpec("", UNET)
    cfg = {"num_train_timesteps": 1000}
    spec = ComponentSpec.from_config("scheduler", ("diffusers", "DDIMScheduler"), cfg)
    cfg["num_train_timesteps"] = 10
    assert spec.config == {"num_train_timesteps": 1000}
    with pytest.raises(ComponentError, match="not JSON-serialisable"):
        ComponentSpec.from_config("s", ("diffusers", "DDIMScheduler"), {"x": object()})
    assert ComponentSpec.from_config("s", ("diffusers", "DDIMScheduler"), {"a": 1}) != ComponentSpec.from_config(
        "s", ("diffusers", "DDIMScheduler"), {"a": 2})


def test_config_only_spec_loads_a_scheduler():
    spec = ComponentSpec.from_config("scheduler", ("diffusers", "DDIMScheduler"), {"num_train_timesteps": 500})
    sched = load_spec(spec)
    assert type(sched).__name__ == "DDIMScheduler"
    assert sched.config["num_train_timesteps"] == 500


# -- classic model_index.json -----------------------------------------------------------------------
def test_read_classic_index(tiny_sd_dir: Path):
    index = read_index(tiny_sd_dir)
    assert index.kind == "classic" and index.class_name == "StableDiffusionPipeline"
    assert set(index.specs) == {"unet", "vae", "text_encoder", "tokenizer", "scheduler"}  # nulls skipped
    assert index.config == {"requires_safety_checker": False}
    unet = index.specs["unet"]
    assert unet.type_hint == UNET and unet.subfolder == "unet" and unet.source == str(tiny_sd_dir.resolve())


def test_classic_index_from_a_repo_id_keeps_the_id(tiny_sd_dir: Path):
    index = read_model_index(tiny_sd_dir / "model_index.json", source="org/tiny-sd")
    assert index.specs["vae"].pretrained_model_name_or_path == "org/tiny-sd"
    assert not index.specs["vae"].is_local


# -- modular_model_index.json -----------------------------------------------------------------------
def test_modular_round_trip(tmp_path: Path, tiny_sd_dir: Path, tiny_sd_seed1_dir: Path):
    specs = {
        "unet": ComponentSpec("unet", UNET, str(tiny_sd_dir), "unet"),
        "vae": ComponentSpec("vae", ("diffusers", "AutoencoderKL"), str(tiny_sd_seed1_dir), "vae", variant=None),
        "text_encoder": ComponentSpec("text_encoder", ("transformers", "CLIPTextModel"), "org/other", "text_encoder",
                                      revision="v2"),
    }
    path = write_modular_index(tmp_path, specs, config={"force_zeros_for_empty_prompt": True})
    raw = json.loads(path.read_text())
    assert raw["unet"] == ["diffusers", "UNet2DConditionModel", {
        "type_hint": ["diffusers", "UNet2DConditionModel"], "pretrained_model_name_or_path": str(tiny_sd_dir),
        "subfolder": "unet", "variant": None, "revision": None}]
    index = read_index(tmp_path)
    assert index.kind == "modular"
    assert index.specs == specs  # identity equality, spec by spec
    assert index.config == {"force_zeros_for_empty_prompt": True}


def test_modular_legacy_repo_key_and_null_slots(tmp_path: Path):
    (tmp_path / "modular_model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionXLModularPipeline",
        "unet": [None, None, {"type_hint": ["diffusers", "UNet2DConditionModel"], "repo": "org/sdxl",
                              "subfolder": "unet", "variant": "fp16", "revision": None}],
        "image_encoder": [None, None, {"type_hint": None, "repo": None, "subfolder": None}],
        "guidance_scale": 5.0,
    }))
    index = read_index(tmp_path)
    assert set(index.specs) == {"unet"}
    assert index.specs["unet"].pretrained_model_name_or_path == "org/sdxl"
    assert index.specs["unet"].variant == "fp16"
    assert index.config == {"guidance_scale": 5.0}


def test_local_folder_wins_over_hub_id_in_index(tmp_path: Path, tiny_sd_dir: Path):
    local = tmp_path / "copy"
    (local / "unet").mkdir(parents=True)
    for f in (tiny_sd_dir / "unet").iterdir():
        os.link(f, local / "unet" / f.name)
    (local / "modular_model_index.json").write_text(json.dumps({
        "unet": ["diffusers", "UNet2DConditionModel", {"pretrained_model_name_or_path": "org/never-downloaded",
                                                        "subfolder": "unet", "revision": "main"}],
        "vae": ["diffusers", "AutoencoderKL", {"pretrained_model_name_or_path": "org/never-downloaded",
                                               "subfolder": "vae"}],
    }))
    index = read_index(local)
    assert index.specs["unet"].source == str(local.resolve()) and index.specs["unet"].revision is None
    assert index.specs["vae"].pretrained_model_name_or_path == "org/never-downloaded"  # not present locally


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"unet": ["diffusers", "UNet2DConditionModel"', r"not valid JSON \(line 1, column"),
        ('["not", "an", "object"]', "must hold a JSON object"),
        ('{"unet": ["diffusers", "UNet2DConditionModel", {"weights": "x"}]}', r"unknown loading key\(s\) \['weights'\]"),
        ('{"unet": ["diffusers", "UNet2DConditionModel", {"type_hint": ["diffusers"]}]}', "type_hint must be"),
        ('{"unet": ["diffusers", "UNet2DConditionModel", {"subfolder": 3}]}', "'unet'.subfolder must be a string"),
        ('{"unet": ["diffusers", "UNet2DConditionModel", "unet"]}', "must be an object"),
    ],
)
def test_malformed_modular_index(tmp_path: Path, content: str, message: str):
    path = tmp_path / "modular_model_index.json"
    path.write_text(content)
    with pytest.raises(IndexFileError, match=message) as info:
        read_modular_index(path)
    assert str(path) in str(info.value)


def test_malformed_classic_index(tmp_path: Path):
    path = tmp_path / "model_index.json"
    path.write_text('{"unet": ["diffusers", null]}')
    with pytest.raises(IndexFileError, match=r"'unet' must be \[library, class\] or \[null, null\]"):
        read_model_index(path)
    path.write_text('{"unet": ["diffusers", "UNet2DConditionModel", {}]}')
    with pytest.raises(IndexFileError, match="modular entries"):
        read_model_index(path)


def test_missing_index(tmp_path: Path):
    with pytest.raises(IndexFileError, match="neither modular_model_index.json nor model_index.json"):
        read_index(tmp_path)
