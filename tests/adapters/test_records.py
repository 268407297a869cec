"""Reproducible runs: `diffblocks run --lora/--embedding` records the files (sha256, name, weight)
in the PNG and `--replay` applies them; save_pretrained writes adapters.json."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from diffblocks.adapters.record import ADAPTER_RECORD_FILE, apply_adapter_record
from diffblocks.cli import main
from diffblocks.cli.run import read_png_metadata
from diffblocks.cli.run_adapters import parse_embedding, parse_lora
from diffblocks.pipeline import Pipeline

from .lora_files import TEXT_TARGETS, UNET_TARGETS, diffusers_layout, random_pairs, save


def _pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


@pytest.fixture(scope="module")
def lora_file(tiny_sd_dir, tmp_path_factory):
    pipe = Pipeline.from_pretrained(tiny_sd_dir, share=False)
    parts = {"unet": random_pairs(pipe.components["unet"], UNET_TARGETS, 4, 31, scale=0.4),
             "text_encoder": random_pairs(pipe.components["text_encoder"], TEXT_TARGETS, 4, 32, scale=0.4)}
    return save(diffusers_layout(parts), tmp_path_factory.mktemp("rec") / "style.safetensors")


def test_parse_flags(tmp_path):
    assert parse_lora("a/b.safetensors:0.5") == ("a/b.safetensors", 0.5)
    assert parse_lora("a/b.safetensors") == ("a/b.safetensors", 1.0)
    assert parse_embedding("e.pt:<tok>") == ("e.pt", "<tok>")
    with pytest.raises(Exception, match="WEIGHT must be a number"):
        parse_lora("a.safetensors:x")


def test_run_records_loras_and_replay_applies_them(tiny_sd_dir, lora_file, tmp_path, capsys):
    emb = save({"<shiny>": torch.randn(32, generator=torch.Generator().manual_seed(0))}, tmp_path / "shiny.safetensors")
    base = ["run", "--model", str(tiny_sd_dir), "--prompt", "a <shiny> cat", "--steps", "2", "--seed", "1", "--quiet"]
    assert main(base + ["--out", str(tmp_path / "plain.png")]) == 0
    argv = base + ["--lora", f"{lora_file}:0.6", "--embedding", str(emb), "--out", str(tmp_path / "lora.png")]
    assert main(argv) == 0
    inputs = read_png_metadata(tmp_path / "lora.png")["inputs"]
    (lora,) = inputs["loras"]
    assert lora["adapter_name"] == "style" and lora["weight"] == 0.6 and len(lora["sha256"]) == 64
    assert inputs["embeddings"][0]["file"].endswith("shiny.safetensors")
    assert np.abs(_pixels(tmp_path / "lora.png") - _pixels(tmp_path / "plain.png")).max() > 2
    assert main(["run", "--replay", str(tmp_path / "lora.png"), "--quiet"]) == 0
    assert np.array_equal(_pixels(tmp_path / "lora-replay.png"), _pixels(tmp_path / "lora.png"))
    # A different file under the recorded name is refused, not used.
    lora_path = tmp_path / "copy.safetensors"
    lora_path.write_bytes(lora_file.read_bytes())
    assert main(base + ["--lora", f"{lora_path}:0.6", "--out", str(tmp_path / "copy.png")]) == 0
    save({"unet.x.lora_A.weight": torch.zeros(1)}, lora_path)
    capsys.readouterr()
    assert main(["run", "--replay", str(tmp_path / "copy.png"), "--quiet"]) == 2  # one line, no traceback
    assert "differs from the recorded" in capsys.readouterr().err


def test_save_pretrained_records_adapters(tiny_sd_dir, lora_file, tmp_path):
    pipe = Pipeline.from_pretrained(tiny_sd_dir, share=False)
    pipe.load_lora_weights(lora_file, adapter_name="style")
    pipe.set_adapters("style", 0.7)
    out = pipe.save_pretrained(tmp_path / "saved")
    record = json.loads((out / ADAPTER_RECORD_FILE).read_text())
    assert record["loras"][0]["adapter_name"] == "style" and record["loras"][0]["weight"] == 0.7
    assert (out / record["loras"][0]["file"]).is_file()
    with pytest.raises(ValueError, match="has LoRA layers"):
        pipe.save_pretrained(tmp_path / "weights", save_weights=True)
    again = Pipeline.from_pretrained(out, share=False)
    apply_adapter_record(again, record, base=out)
    args = {"prompt": "a cat", "num_inference_steps": 2, "output_type": "np", "height": 32, "width": 32, "seed": 0}
    assert np.abs(again(**args, progress=False).images - pipe(**args, progress=False).images).max() == 0


def test_adapters_do_not_leak_into_a_pipeline_sharing_the_model(tiny_sd_dir, lora_file):
    from diffblocks.adapters.lora import lora_record

    a, b = Pipeline.from_pretrained(tiny_sd_dir), Pipeline.from_pretrained(tiny_sd_dir)
    assert a.components["unet"] is b.components["unet"]  # one shared UNet until an adapter arrives
    a.load_lora_weights(lora_file)
    assert a.components["unet"] is not b.components["unet"]
    assert lora_record(a.components["unet"]) is not None and lora_record(b.components["unet"]) is None
    assert lora_record(b.components["text_encoder"]) is None
