"""Pickles are refused unless allowed, and then read with weights_only; hostile pickles never run;
LoRA files given as checkpoints are named as LoRAs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from diffblocks import Pipeline
from diffblocks.models import UNet2DConditionModel
from diffblocks.models.single_file.checkpoint import CheckpointError
from diffblocks.models.single_file.models import original_state_dict


class _Payload:
    """Unpickling this writes a marker file: the code a hostile checkpoint would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


@pytest.fixture()
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "marker.txt"
    file = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}, "x": _Payload(marker)}, file)
    return file, marker


def test_the_payload_is_live(hostile: tuple[Path, Path]) -> None:
    """Guard for the next tests: an unsafe load of this file does run the payload."""
    file, marker = hostile
    torch.load(file, weights_only=False)
    assert marker.read_text() == "code ran"


@pytest.mark.parametrize("allow_pickle", [False, True])
def test_hostile_pickle_is_refused_without_running(hostile: tuple[Path, Path], allow_pickle: bool) -> None:
    file, marker = hostile
    expected = "refused by torch.load\\(weights_only=True\\)" if allow_pickle else "is a pickle \\(\\.ckpt\\).*refused"
    with pytest.raises(CheckpointError, match=expected):
        UNet2DConditionModel.from_single_file(file, allow_pickle=allow_pickle)
    with pytest.raises(CheckpointError, match=expected):
        Pipeline.from_single_file(file, allow_pickle=allow_pickle)
    assert not marker.exists()


def test_trusted_ckpt_loads_with_allow_pickle(tiny_sd_dir: Path, tmp_path: Path) -> None:
    unet = UNet2DConditionModel.from_pretrained(tiny_sd_dir, subfolder="unet")
    file = tmp_path / "unet.ckpt"
    torch.save({"state_dict": original_state_dict(unet), "global_step": 1}, file)  # a Lightning-style file
    with pytest.raises(CheckpointError, match="allow_pickle=True"):
        UNet2DConditionModel.from_single_file(file, config=tiny_sd_dir)
    loaded = UNet2DConditionModel.from_single_file(file, config=tiny_sd_dir, allow_pickle=True)
    assert all(torch.equal(a, b) for a, b in zip(unet.state_dict().values(), loaded.state_dict().values()))


@pytest.mark.parametrize("keys", [
    ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", "lora_unet_down_blocks_0_attentions_0_proj_in.alpha"],
    ["unet.down_blocks.0.attentions.0.proj_in.lora_A.weight", "unet.down_blocks.0.attentions.0.proj_in.lora_B.weight"],
])
def test_lora_given_as_checkpoint_says_lora(tmp_path: Path, keys: list[str]) -> None:
    file = tmp_path / "style.safetensors"
    save_file({k: torch.zeros(4, 4) for k in keys}, str(file))
    for load in (UNet2DConditionModel.from_single_file, Pipeline.from_single_file):
        with pytest.raises(CheckpointError, match=r"style\.safetensors: is a LoRA adapter \(keys like .*lora"):
            load(file)


def test_unrelated_safetensors_names_file_keys_and_expectation(tmp_path: Path) -> None:
    file = tmp_path / "other.safetensors"
    save_file({"encoder.layer.0.weight": torch.zeros(2)}, str(file))
    with pytest.raises(CheckpointError, match=r"other\.safetensors: holds 1 unrecognised keys \(first: encoder\.layer\.0\.weight\); "
                       r"UNet2DConditionModel expected keys like 'model\.diffusion_model\.input_blocks"):
        UNet2DConditionModel.from_single_file(file)
    with pytest.raises(CheckpointError, match=r"other\.safetensors: holds no known layout.*expected a whole SD"):
        Pipeline.from_single_file(file)
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=r"broken\.safetensors: not a readable safetensors file"):
        UNet2DConditionModel.from_single_file(tmp_path / "broken.safetensors")


def test_load_refuses_the_hostile_pickle_too(hostile: tuple[Path, Path]) -> None:
    import diffblocks

    file, marker = hostile
    for allow in (False, True):
        with pytest.raises(CheckpointError):
            diffblocks.load(file, allow_pickle=allow)
    assert not marker.exists()


def test_plain_model_imports_do_not_pull_in_the_converters() -> None:
    """The single-file methods import their package on use: loading a diffusers folder never
    pays for the converters or gguf."""
    import subprocess
    import sys

    code = ("import sys, diffblocks.models.unet_2d_condition, diffblocks.pipeline; "
            "print(any(m.startswith(('diffblocks.single_file', 'gguf')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False"
