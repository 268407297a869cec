"""The model base: config files, weight files (sharded, variants, pickle opt-in) and load errors."""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from diffblocks.models import Model, ModelLoadError, UNet2DConditionModel
from tests.models.tiny import SD15, save_diffusers_unet, unet_inputs

WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A diffusers-saved tiny SD 1.5 UNet folder (do not modify: copy first)."""
    folder = tmp_path_factory.mktemp("unet")
    save_diffusers_unet(SD15, folder)
    return folder


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _same_weights(a: torch.nn.Module | dict, b: torch.nn.Module | dict) -> None:
    sa = a if isinstance(a, dict) else a.state_dict()
    sb = b if isinstance(b, dict) else b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k].float(), sb[k].float(), atol=0, rtol=0, msg=k)


def test_loaded_model_is_materialised_eval_and_subclass_of_model(saved: Path) -> None:
    model = UNet2DConditionModel.from_pretrained(saved, device="cpu")
    assert isinstance(model, Model) and not model.training
    assert all(not t.is_meta for t in [*model.parameters(), *model.buffers()])
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    _same_weights(model, load_file(saved / WEIGHTS))


def test_subfolder_and_torch_dtype(saved: Path, tmp_path: Path) -> None:
    _copy(saved, tmp_path / "unet")
    model = UNet2DConditionModel.from_pretrained(tmp_path, subfolder="unet", torch_dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_sharded_checkpoints_both_directions(saved: Path, tmp_path: Path) -> None:
    from diffusers import UNet2DConditionModel as DiffusersUNet

    ours = UNet2DConditionModel.from_pretrained(saved)
    ours.save_pretrained(tmp_path / "ours", max_shard_size="200KB")
    index = json.loads((tmp_path / "ours" / f"{WEIGHTS}.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2 and shards[0] == f"diffusion_pytorch_model-00001-of-{len(shards):05d}.safetensors"
    assert not (tmp_path / "ours" / WEIGHTS).exists()
    _same_weights(UNet2DConditionModel.from_pretrained(tmp_path / "ours"), ours)
    _same_weights(DiffusersUNet.from_pretrained(tmp_path / "ours"), ours)

    # diffusers' own sharded layout loads too.
    DiffusersUNet.from_pretrained(saved).save_pretrained(tmp_path / "theirs", max_shard_size="200KB")
    assert (tmp_path / "theirs" / f"{WEIGHTS}.index.json").exists()
    _same_weights(UNet2DConditionModel.from_pretrained(tmp_path / "theirs"), ours)

    # Saving again unsharded removes the stale shards.
    ours.save_pretrained(tmp_path / "ours")
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == ["config.json", WEIGHTS]


def test_variant_selection(saved: Path, tmp_path: Path) -> None:
    from diffusers import UNet2DConditionModel as DiffusersUNet

    ref = DiffusersUNet.from_pretrained(saved, torch_dtype=torch.float16)
    ref.save_pretrained(tmp_path, variant="fp16")
    assert (tmp_path / "diffusion_pytorch_model.fp16.safetensors").exists()
    model = UNet2DConditionModel.from_pretrained(tmp_path, variant="fp16", torch_dtype=torch.float16)
    _same_weights(model, ref)
    with pytest.raises(ModelLoadError, match=r"diffusion_pytorch_model\.safetensors.*fp16"):
        UNet2DConditionModel.from_pretrained(tmp_path)  # no plain file, only the variant
    model.save_pretrained(tmp_path / "again", variant="fp16", max_shard_size=100_000)
    assert (tmp_path / "again" / "diffusion_pytorch_model.safetensors.index.fp16.json").exists()
    _same_weights(DiffusersUNet.from_pretrained(tmp_path / "again", variant="fp16", torch_dtype=torch.float16), ref)


def test_pickle_weights_need_explicit_opt_in(saved: Path, tmp_path: Path) -> None:
    from diffusers import UNet2DConditionModel as DiffusersUNet

    ref = DiffusersUNet.from_pretrained(saved)
    ref.save_pretrained(tmp_path, safe_serialization=False)
    assert (tmp_path / "diffusion_pytorch_model.bin").exists()
    with pytest.raises(ModelLoadError, match="allow_pickle=True"):
        UNet2DConditionModel.from_pretrained(tmp_path)
    _same_weights(UNet2DConditionModel.from_pretrained(tmp_path, allow_pickle=True), ref)


def test_hub_ids_go_through_pinned_snapshot(saved: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _copy(saved, tmp_path / "snap" / "unet")
    calls = []

    def fake_snapshot(repo_id: str, **kwargs: object) -> str:
        calls.append((repo_id, kwargs))
        return str(tmp_path / "snap")

    monkeypatch.setitem(sys.modules, "diffblocks.hub", types.SimpleNamespace(snapshot_download_pinned=fake_snapshot))
    model = UNet2DConditionModel.from_pretrained("org/model", subfolder="unet", revision="main")
    assert isinstance(model, UNet2DConditionModel)
    assert calls[0][0] == "org/model" and calls[0][1]["revision"] == "main"


def test_missing_config(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        UNet2DConditionModel.from_pretrained(tmp_path)


def test_unknown_class_name(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "_class_name": "UNet3DConditionModel"}))
    with pytest.raises(ModelLoadError, match="UNet3DConditionModel"):
        UNet2DConditionModel.from_pretrained(folder)


def test_missing_extra_and_misshapen_keys_in_one_error(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    weights = load_file(folder / WEIGHTS)
    del weights["conv_in.bias"], weights["mid_block.resnets.0.norm1.weight"]
    weights["extra.weight"] = torch.zeros(3)
    weights["conv_out.weight"] = torch.zeros(4, 32, 1, 1)
    save_file(weights, folder / WEIGHTS)
    with pytest.raises(ModelLoadError) as info:
        UNet2DConditionModel.from_pretrained(folder)
    message = str(info.value)
    for expected in ("conv_in.bias", "mid_block.resnets.0.norm1.weight", "extra.weight", "conv_out.weight",
                     "(4, 32, 3, 3)", "(4, 32, 1, 1)", str(folder / WEIGHTS)):
        assert expected in message


def test_truncated_safetensors(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    data = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated") as info:
        UNet2DConditionModel.from_pretrained(folder)
    assert str(folder / WEIGHTS) in str(info.value)


def test_index_listing_a_missing_shard(saved: Path, tmp_path: Path) -> None:
    UNet2DConditionModel.from_pretrained(saved).save_pretrained(tmp_path, max_shard_size="200KB")
    next(tmp_path.glob("*-00002-of-*.safetensors")).unlink()
    with pytest.raises(ModelLoadError, match="00002"):
        UNet2DConditionModel.from_pretrained(tmp_path)


def test_config_reads_diffusers_json_and_writes_it_back(saved: Path, caplog: pytest.LogCaptureFixture) -> None:
    raw = json.loads((saved / "config.json").read_text())
    config = UNet2DConditionModel.load_config(saved)
    assert config.block_out_channels == (32, 64) and config.heads == (8, 8)
    written = config.to_dict()
    assert written["_class_name"] == "UNet2DConditionModel" and "_diffusers_version" in written
    for key, value in raw.items():
        if not key.startswith("_") and key not in ("resnet_out_scale_factor", "addition_embed_type_num_heads"):
            assert written[key] == value, key
    with caplog.at_level(logging.WARNING):
        assert UNet2DConditionModel.config_class.from_dict({**raw, "brand_new_key": 1}) == config
    assert "brand_new_key" in caplog.text
    with pytest.raises(ValueError, match="dual_cross_attention.*True"):
        UNet2DConditionModel.config_class.from_dict({**raw, "dual_cross_attention": True})
    with pytest.raises(ValueError, match="block_out_channels"):
        UNet2DConditionModel.config_class.from_dict({**raw, "block_out_channels": [32, 64, 64]})


def test_from_config_forward_runs(saved: Path) -> None:
    model = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(saved))
    with torch.no_grad():
        out = model(**unet_inputs(SD15, batch=1, size=8))
    assert out.sample.shape == (1, 4, 8, 8)


def test_meta_construction_skips_only_meta_initialisers() -> None:
    from diffblocks.models.modeling import skip_meta_init

    before = torch.nn.init.kaiming_uniform_
    with skip_meta_init():
        meta = torch.nn.Linear(4, 4)
        real = torch.nn.Linear(64, 64, device="cpu")  # an explicit device still initialises
    assert meta.weight.is_meta
    # nn.Linear's default init: uniform within 1/sqrt(fan_in) (uninitialised memory would not be).
    assert real.weight.abs().max() <= 1 / 8 and real.weight.std() > 0.03
    assert torch.nn.init.kaiming_uniform_ is before


def test_weights_load_onto_an_indexed_cpu_device(tmp_path: Path) -> None:
    """accelerate gives each CPU process ``cpu:0``; safetensors only knows ``cpu``."""
    from diffblocks.models import AutoencoderKL

    vae = AutoencoderKL(block_out_channels=[8], down_block_types=["DownEncoderBlock2D"],
                        up_block_types=["UpDecoderBlock2D"], norm_num_groups=4, latent_channels=4, layers_per_block=1)
    vae.save_pretrained(tmp_path)
    loaded = AutoencoderKL.from_pretrained(tmp_path, device=torch.device("cpu:0"))
    assert loaded.device.type == "cpu"
