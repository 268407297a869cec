"""Which repo files one component needs."""

from __future__ import annotations

from diffblocks.components.files import select_component_files

SD_REPO = [
    "model_index.json",
    "README.md",
    "safety_checker/config.json",
    "safety_checker/model.safetensors",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "text_encoder/model.fp16.safetensors",
    "text_encoder/pytorch_model.bin",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors.index.json",
    "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
    "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
    "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
    "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
    "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
    "unet/diffusion_pytorch_model.non_ema.bin",
    "unet/custom_unet.py",
    "vae/config.json",
    "vae/diffusion_pytorch_model.bin",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "tokenizer/tokenizer_config.json",
    "tokenizer/special_tokens_map.json",
]


def test_plain_safetensors_preferred_over_pickle_and_variants():
    assert select_component_files(SD_REPO, "text_encoder") == ["text_encoder/config.json", "text_encoder/model.safetensors"]


def test_variant_picks_variant_shards():
    got = select_component_files(SD_REPO, "unet", variant="fp16")
    assert got == [
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
        "unet/diffusion_pytorch_model.safetensors.index.json",
        "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
        "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
    ]


def test_plain_shards_and_no_repo_code_unless_asked():
    got = select_component_files(SD_REPO, "unet")
    assert "unet/diffusion_pytorch_model-00001-of-00002.safetensors" in got
    assert not any("fp16-" in f or f.endswith((".bin", ".py")) for f in got)
    assert "unet/custom_unet.py" in select_component_files(SD_REPO, "unet", extra=["custom_unet.py"])


def test_pickle_only_when_no_safetensors_and_missing_variant_falls_back():
    assert select_component_files(SD_REPO, "vae") == ["vae/config.json", "vae/diffusion_pytorch_model.bin"]
    assert select_component_files(SD_REPO, "vae", variant="fp16") == ["vae/config.json", "vae/diffusion_pytorch_model.bin"]


def test_small_files_and_empty_subfolder():
    assert select_component_files(SD_REPO, "tokenizer") == [
        "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json",
        "tokenizer/vocab.json",
    ]
    assert select_component_files(SD_REPO, "scheduler") == []
    assert select_component_files(["weird[name]/config.json"], "weird[name]") == ["weird[[]name]/config.json"]
