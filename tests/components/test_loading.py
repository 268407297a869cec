"""Loading every component of tiny diffusers-saved folders, and the errors when that cannot work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffblocks.components import ComponentError, ComponentSpec, ComponentsManager, write_modular_index
from diffblocks.components.loading import load_spec
from diffblocks.registry.trust import UntrustedCodeError

EXPECTED = {
    "sd": {"unet", "vae", "text_encoder", "tokenizer", "scheduler"},
    "sdxl": {"unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"},
    "flux": {"transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"},
}


def _weights(folder: Path, sub: str) -> dict[str, torch.Tensor]:
    files = sorted((folder / sub).glob("*.safetensors"))
    out: dict[str, torch.Tensor] = {}
    for f in files:
        out.update(load_file(f))
    return out


def _assert_same_weights(module: torch.nn.Module, folder: Path, sub: str) -> None:
    saved = _weights(folder, sub)
    state = module.state_dict()
    shared = set(saved) & set(state)
    # transformers ties/derives a few buffers (e.g. position_ids); every saved tensor must be there.
    assert set(saved) - set(state) == set(), f"{sub}: not loaded {sorted(set(saved) - set(state))[:5]}"
    for key in shared:
        assert torch.equal(state[key].to(saved[key].dtype), saved[key]), f"{sub}.{key} differs"


@pytest.mark.parametrize("kind", ["sd", "sdxl", "flux"])
def test_load_every_component_of_a_classic_folder(kind: str, request: pytest.FixtureRequest):
    folder: Path = request.getfixturevalue(f"tiny_{kind}_dir")
    manager = ComponentsManager.from_pretrained(folder)
    assert set(manager) == EXPECTED[kind] and manager.loaded == frozenset()
    objects = manager.load()
    assert set(objects) == EXPECTED[kind] == manager.loaded
    index = json.loads((folder / "model_index.json").read_text())
    for name, obj in objects.items():
        library, cls = index[name]
        assert obj is not None, name
        if library == "diffusers":
            assert type(obj).__module__.startswith("diffblocks."), (name, type(obj))
        if library == "transformers":
            assert type(obj).__module__.startswith("transformers."), (name, type(obj))
        if isinstance(obj, torch.nn.Module):
            _assert_same_weights(obj, folder, name)
            assert not obj.training
    ids = objects["tokenizer"]("a photo of a cat").input_ids
    assert ids[0] == objects["tokenizer"].bos_token_id and ids[-1] == objects["tokenizer"].eos_token_id
    assert len(ids) == 7  # every word is one token in the tiny vocabulary


def test_modular_index_pointing_at_two_folders(tmp_path: Path, tiny_sd_dir: Path, tiny_sd_seed1_dir: Path):
    write_modular_index(tmp_path / "mixed", {
        "unet": ComponentSpec("unet", ("diffusers", "UNet2DConditionModel"), str(tiny_sd_dir), "unet"),
        "vae": ComponentSpec("vae", ("diffusers", "AutoencoderKL"), str(tiny_sd_seed1_dir), "vae"),
        "text_encoder": ComponentSpec("text_encoder", ("transformers", "CLIPTextModel"), str(tiny_sd_seed1_dir),
                                      "text_encoder"),
        "tokenizer": ComponentSpec("tokenizer", ("transformers", "CLIPTokenizer"), str(tiny_sd_dir), "tokenizer"),
    })
    manager = ComponentsManager.from_pretrained(tmp_path / "mixed")
    _assert_same_weights(manager["unet"], tiny_sd_dir, "unet")
    _assert_same_weights(manager["vae"], tiny_sd_seed1_dir, "vae")
    _assert_same_weights(manager["text_encoder"], tiny_sd_seed1_dir, "text_encoder")
    seed0_vae = _weights(tiny_sd_dir, "vae")
    assert any(not torch.equal(seed0_vae[k], v) for k, v in manager["vae"].state_dict().items() if k in seed0_vae)


def test_per_component_dtype(tiny_sd_dir: Path):
    manager = ComponentsManager.from_pretrained(
        tiny_sd_dir, torch_dtype={"vae": torch.float32, "default": torch.bfloat16}
    )
    assert next(manager["unet"].parameters()).dtype == torch.bfloat16
    assert next(manager["text_encoder"].parameters()).dtype == torch.bfloat16
    assert next(manager["vae"].parameters()).dtype == torch.float32
    assert manager["tokenizer"]("a cat").input_ids  # dtype does not touch tokenizers
    assert "bfloat16" in manager.table() and "float32" in manager.table()


def test_single_dtype_and_device(tiny_sd_dir: Path):
    manager = ComponentsManager.from_pretrained(tiny_sd_dir, torch_dtype=torch.float16, device="cpu")
    p = next(manager["vae"].parameters())
    assert p.dtype == torch.float16 and p.device == torch.device("cpu")


# -- errors ------------------------------------------------------------------------------------
def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_index(folder: Path, **entries: object) -> None:
    path = folder / "model_index.json"
    data = json.loads(path.read_text())
    data.update(entries)
    path.write_text(json.dumps(data))


def test_missing_subfolder_is_an_error_naming_component_and_folder(tmp_path: Path, tiny_sd_dir: Path):
    folder = _copy(tiny_sd_dir, tmp_path / "sd")
    shutil.rmtree(folder / "vae")
    manager = ComponentsManager.from_pretrained(folder)
    assert isinstance(manager["unet"], torch.nn.Module)  # the others still load
    with pytest.raises(ComponentError, match=r"component 'vae' \(diffusers.AutoencoderKL\).*vae' is missing.*Fix 'subfolder'"):
        manager["vae"]
    assert "vae" not in manager.loaded


def test_unknown_library_is_refused_before_any_file_is_read(tmp_path: Path, tiny_sd_dir: Path, monkeypatch):
    folder = _copy(tiny_sd_dir, tmp_path / "sd")
    _edit_index(folder, unet=["my_unets", "FancyUNet"])
    (folder / "unet" / "my_unets.py").write_text("raise RuntimeError('repo code must not run')\n")
    manager = ComponentsManager.from_pretrained(folder)
    with pytest.raises(UntrustedCodeError, match="component 'unet'.*trust_remote_code=True"):
        manager["unet"]


def test_trusted_repo_code_is_loaded_from_the_component_folder(tmp_path: Path, tiny_sd_dir: Path):
    folder = _copy(tiny_sd_dir, tmp_path / "sd")
    _edit_index(folder, scheduler=["my_sched", "MySched"])
    (folder / "scheduler" / "my_sched.py").write_text(
        "class MySched:\n"
        "    @classmethod\n"
        "    def from_pretrained(cls, path, subfolder=None):\n"
        "        obj = cls(); obj.where = (path, subfolder); return obj\n"
    )
    manager = ComponentsManager.from_pretrained(folder, trust_remote_code=True)
    assert manager["scheduler"].where == (str(folder.resolve()), "scheduler")


def test_disallowed_transformers_class(tmp_path: Path, tiny_sd_dir: Path):
    folder = _copy(tiny_sd_dir, tmp_path / "sd")
    _edit_index(folder, text_encoder=["transformers", "GPT2Model"])
    manager = ComponentsManager.from_pretrained(folder)
    with pytest.raises(UntrustedCodeError, match="component 'text_encoder'.*GPT2Model"):
        manager["text_encoder"]


def test_unknown_diffusers_class(tmp_path: Path, tiny_sd_dir: Path):
    folder = _copy(tiny_sd_dir, tmp_path / "sd")
    _edit_index(folder, vae=["diffusers", "AutoencoderTiny3000"])
    with pytest.raises(ComponentError, match="component 'vae'.*AutoencoderTiny3000.*register_component_class"):
        ComponentsManager.from_pretrained(folder)["vae"]


def test_corrupt_weights_are_an_error_naming_the_component(tmp_path: Path, tiny_sd_dir: Path):
    folder = _copy(tiny_sd_dir, tmp_path / "sd")
    (folder / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ComponentError, match=r"component 'vae'.*loading from '.*vae' failed"):
        ComponentsManager.from_pretrained(folder)["vae"]


def test_corrupt_index_json(tmp_path: Path, tiny_sd_dir: Path):
    folder = _copy(tiny_sd_dir, tmp_path / "sd")
    (folder / "model_index.json").write_text('{"unet": ["diffusers", "UNet2DConditionModel"],')
    from diffblocks.components import IndexFileError

    with pytest.raises(IndexFileError, match=r"model_index.json' is not valid JSON \(line 1"):
        ComponentsManager.from_pretrained(folder)


def test_spec_without_source(tmp_path: Path):
    manager = ComponentsManager([ComponentSpec("vae", ("diffusers", "AutoencoderKL"))])
    with pytest.raises(ComponentError, match="component 'vae'.*neither a source"):
        manager["vae"]
    with pytest.raises(KeyError, match="no component 'unet'"):
        manager["unet"]


def test_spec_load_on_its_own_with_overrides(tiny_sd_dir: Path):
    spec = ComponentSpec("vae", ("diffusers", "AutoencoderKL"), str(tiny_sd_dir), "vae")
    vae = load_spec(spec, torch_dtype=torch.float16)
    assert next(vae.parameters()).dtype == torch.float16
    with pytest.raises(ComponentError, match="component 'vae'.*'.*nope' is missing"):
        load_spec(spec, subfolder="nope")
