"""`diffblocks.load` on every kind of input, and ``diffblocks run --model FILE``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import diffblocks
from diffblocks import Graph, Pipeline
from diffblocks.cli import main
from diffblocks.loader import LoadError, describe
from diffblocks.models import AutoencoderKL, FluxTransformer2DModel, UNet2DConditionModel
from diffblocks.models.single_file.checkpoint import CheckpointError
from diffblocks.models.single_file.gguf import GGUFLinear, save_gguf


@pytest.fixture(scope="module")
def full_vocab_sd_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SD 1.x-like whole-pipeline file whose text encoder knows CLIP's 49,408 tokens, so
    it runs with the bundled tokenizer and no config at all."""
    import diffusers
    from transformers import CLIPTextModel

    from tests.components.tiny_pipelines import _clip_text_config, sd_components

    parts = sd_components()
    config = _clip_text_config()
    config.vocab_size = 49408
    torch.manual_seed(3)
    parts["text_encoder"] = CLIPTextModel(config)
    folder = tmp_path_factory.mktemp("sdvocab")
    diffusers.StableDiffusionPipeline(**parts, requires_safety_checker=False).save_pretrained(str(folder / "pipe"))
    return Pipeline.from_pretrained(folder / "pipe").save_single_file(folder / "tiny-sd.safetensors")


def test_pipeline_folder_and_component_folders(tiny_sd_dir: Path) -> None:
    assert isinstance(diffblocks.load(tiny_sd_dir), Pipeline)
    assert isinstance(diffblocks.load(tiny_sd_dir / "unet"), UNet2DConditionModel)
    assert isinstance(diffblocks.load(tiny_sd_dir / "vae"), AutoencoderKL)
    assert type(diffblocks.load(tiny_sd_dir / "scheduler")).__name__ == "DDIMScheduler"
    assert type(diffblocks.load(tiny_sd_dir / "text_encoder")).__name__ == "CLIPTextModel"
    assert "input_ids" in diffblocks.load(tiny_sd_dir / "tokenizer")("a cat")


def test_graph_only_folder_and_graph_file(tiny_sd_dir: Path, tmp_path: Path) -> None:
    saved = Pipeline.from_pretrained(tiny_sd_dir).save_pretrained(tmp_path / "saved")
    (tmp_path / "graph-only").mkdir()
    shutil.copy(saved / "graph.json", tmp_path / "graph-only" / "graph.json")
    assert isinstance(diffblocks.load(tmp_path / "graph-only"), Graph)
    assert isinstance(diffblocks.load(saved / "graph.json"), Graph)
    assert isinstance(diffblocks.load(saved), Pipeline)  # graph.json + modular_model_index.json


def test_single_files_and_gguf(tiny_sd_dir: Path, full_vocab_sd_file: Path, tmp_path: Path) -> None:
    assert isinstance(diffblocks.load(full_vocab_sd_file), Pipeline)
    unet_file = UNet2DConditionModel.from_pretrained(tiny_sd_dir, subfolder="unet").save_single_file(tmp_path / "u.safetensors")
    assert isinstance(diffblocks.load(unet_file), UNet2DConditionModel)
    vae_file = AutoencoderKL.from_pretrained(tiny_sd_dir, subfolder="vae").save_single_file(tmp_path / "v.safetensors")
    assert isinstance(diffblocks.load(vae_file), AutoencoderKL)
    flux = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
                                  num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                                  axes_dims_rope=[4, 4, 8])
    flux_file = flux.save_single_file(tmp_path / "flux.safetensors")
    assert isinstance(diffblocks.load(flux_file), FluxTransformer2DModel)
    gguf_file = save_gguf(flux, tmp_path / "flux.gguf", "Q8_0")
    # a GGUF we wrote carries no config: give one (head width 16 is not Flux's standard 128)
    loaded = diffblocks.load(gguf_file, config=flux.config)
    assert isinstance(loaded, FluxTransformer2DModel) and any(isinstance(m, GGUFLinear) for m in loaded.modules())
    pickled = tmp_path / "u.ckpt"
    torch.save({"state_dict": dict(diffblocks.models.single_file.checkpoint.Checkpoint(unet_file))}, pickled)
    with pytest.raises(CheckpointError, match="allow_pickle"):
        diffblocks.load(pickled)
    assert isinstance(diffblocks.load(pickled, allow_pickle=True), UNet2DConditionModel)


def test_what_is_not_loadable_says_what_it_found(tmp_path: Path) -> None:
    folder = tmp_path / "holiday"
    folder.mkdir()
    (folder / "notes.txt").write_text("hi")
    (folder / "photo.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(LoadError, match=r"holiday: a folder with 2 file\(s\) \['notes.txt', 'photo.jpg'\].*expected a diffusers pipeline folder"):
        diffblocks.load(folder)
    with pytest.raises(LoadError, match=r"notes.txt: a .txt file; expected"):
        diffblocks.load(folder / "notes.txt")
    with pytest.raises(LoadError, match="no such file or folder"):
        diffblocks.load(tmp_path / "missing.safetensors")
    lora = tmp_path / "lora.safetensors"
    save_file({"lora_unet_mid_block_attentions_0_proj_in.lora_up.weight": torch.zeros(2, 2)}, str(lora))
    with pytest.raises(CheckpointError, match="is a LoRA adapter"):
        diffblocks.load(lora)
    odd = tmp_path / "odd.safetensors"
    save_file({"foo.weight": torch.zeros(2)}, str(odd))
    with pytest.raises(LoadError, match=r"odd.safetensors: 1 keys of no known layout \(first: foo.weight\)"):
        diffblocks.load(odd)
    bad_component = tmp_path / "comp"
    bad_component.mkdir()
    (bad_component / "config.json").write_text(json.dumps({"hidden": 3}))
    with pytest.raises(LoadError, match="names no class"):
        diffblocks.load(bad_component)
    assert describe("owner/some-model") == "hub"


def test_cli_run_with_a_single_file(full_vocab_sd_file: Path, tmp_path: Path, tiny_sd_dir: Path, capsys) -> None:
    out = tmp_path / "cat.png"
    assert main(["run", "--model", str(full_vocab_sd_file), "--prompt", "a photo of a cat", "--steps", "1",
                 "--height", "32", "--width", "32", "--out", str(out), "--quiet"]) == 0
    assert out.is_file()
    unet_file = UNet2DConditionModel.from_pretrained(tiny_sd_dir, subfolder="unet").save_single_file(tmp_path / "u.safetensors")
    capsys.readouterr()
    assert main(["run", "--model", str(unet_file), "--prompt", "x", "--quiet"]) == 2  # a user mistake: one line
    err = capsys.readouterr().err
    assert "holds only a unet model" in err and "Traceback" not in err
