"""Whole-pipeline single files (SD 1.x-, SD 2.x- and SDXL-like): our export, read by diffusers'
``from_single_file(file, config=<folder>)`` and by our ``Pipeline.from_single_file``, gives the
images of the original folder (<= 1e-4); full-size layouts are recognised and mapped offline.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diffblocks import Pipeline
from diffblocks.models import AutoencoderKL, UNet2DConditionModel
from diffblocks.models.modeling import skip_meta_init
from diffblocks.models.single_file.checkpoint import Checkpoint, CheckpointError
from diffblocks.models.single_file.detect import detect, standard_family
from diffblocks.single_file.pipeline import read_pipeline_file, write_pipeline_file
from diffblocks.single_file.tokenizer import clip_tokenizer

TOL = 1e-4
CALL = {"prompt": "a photo of a cat", "num_inference_steps": 2, "height": 32, "width": 32, "output_type": "pt"}


def _components(kind: str) -> tuple[str, dict]:
    """diffusers components of the tiny pipelines; SD2-like swaps in a GELU (OpenCLIP-like)
    encoder; SDXL-like widens the second encoder so the two encoders differ in width as in SDXL
    (diffusers tells its two CLIP encoders apart by width)."""
    from tests.components.tiny_pipelines import _clip_text_config, sd_components, sdxl_components
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    if kind in ("sd", "sd2"):
        parts = sd_components()
        if kind == "sd2":  # SD 2.x: linear attention projections in the UNet, a GELU encoder
            from diffusers import UNet2DConditionModel as DiffusersUNet

            torch.manual_seed(4)
            parts["unet"] = DiffusersUNet.from_config(parts["unet"].config, use_linear_projection=True)
            config = _clip_text_config()
            config.hidden_act = "gelu"
            torch.manual_seed(5)
            parts["text_encoder"] = CLIPTextModel(config)
            parts["scheduler"].register_to_config(prediction_type="v_prediction")
        parts["requires_safety_checker"] = False
        return "StableDiffusionPipeline", parts
    from diffusers import UNet2DConditionModel as DiffusersUNet

    parts = sdxl_components()
    config = _clip_text_config(hidden=64)
    config.hidden_act = "gelu"
    torch.manual_seed(6)
    parts["text_encoder_2"] = CLIPTextModelWithProjection(config)
    torch.manual_seed(7)
    parts["unet"] = DiffusersUNet.from_config(parts["unet"].config, cross_attention_dim=32 + 64)
    return "StableDiffusionXLPipeline", parts


@pytest.fixture(scope="module", params=["sd", "sd2", "sdxl"])
def tiny_folder(request, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    import diffusers

    class_name, parts = _components(request.param)
    folder = tmp_path_factory.mktemp(request.param)
    getattr(diffusers, class_name)(**parts).save_pretrained(str(folder))
    return request.param, folder


def _ours(pipe: Pipeline) -> torch.Tensor:
    return pipe(**CALL, seed=0, progress=False).images


def test_exported_pipeline_reads_back_in_diffusers_and_ours(tiny_folder, tmp_path: Path) -> None:
    import diffusers

    kind, folder = tiny_folder
    cls = diffusers.StableDiffusionXLPipeline if kind == "sdxl" else diffusers.StableDiffusionPipeline
    file = Pipeline.from_pretrained(folder).save_single_file(tmp_path / "model.safetensors")
    keys = Checkpoint(file).keys()
    assert detect(keys, Checkpoint(file).shape).kind == {"sd": "sd1", "sd2": "sd2", "sdxl": "sdxl"}[kind]

    reference = cls.from_pretrained(str(folder))
    theirs = cls.from_single_file(str(file), config=str(folder))
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if hasattr(reference, name) and getattr(reference, name) is not None:
            a, b = getattr(reference, name).state_dict(), getattr(theirs, name).state_dict()
            assert max((a[k] - b[k]).abs().max().item() for k in a if not k.endswith("position_ids")) == 0.0, name
    expected = reference(**CALL, generator=torch.Generator().manual_seed(0)).images
    got_theirs = theirs(**CALL, generator=torch.Generator().manual_seed(0)).images
    ours = Pipeline.from_single_file(file, config=folder)
    assert (got_theirs - expected).abs().max().item() <= TOL
    assert (_ours(ours) - expected).abs().max().item() <= TOL
    if kind == "sd2":
        assert ours.components["scheduler"].config["prediction_type"] == "v_prediction"


def test_offline_load_without_config(tiny_folder, tmp_path: Path) -> None:
    """No config: configs come from the bundled standard ones plus the file's shapes, the
    tokenizer from the bundled vocabulary; the weights are the file's. (Not run: the tiny
    encoders know 1000 token ids, the bundled tokenizer all 49,408.)"""
    kind, folder = tiny_folder
    source = Pipeline.from_pretrained(folder)
    file = source.save_single_file(tmp_path / "model.safetensors")
    pipe = Pipeline.from_single_file(file)
    assert pipe.components["tokenizer"]("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if name in source.components:
            a, b = source.components[name].state_dict(), pipe.components[name].state_dict()
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert sorted(pipe.components) == sorted(source.components)
    # the export records the prediction type (Stability's model-spec metadata); it is read back
    expected = "v_prediction" if kind == "sd2" else "epsilon"
    assert Checkpoint(file).metadata["modelspec.prediction_type"] == ("v" if kind == "sd2" else "epsilon")
    assert pipe.components["scheduler"].config["prediction_type"] == expected
    if kind == "sd2":
        eps = Pipeline.from_single_file(file, prediction_type="epsilon")
        assert eps.components["scheduler"].config["prediction_type"] == "epsilon"


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_full_size_pipeline_layout_on_meta(family: str) -> None:
    """Standard full-size SD 1.5 / 2.x / SDXL: built on meta, exported, recognised as the family,
    and every component's config inferred equals the bundled standard one."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from diffblocks.models.single_file.detect import unet_config, vae_config
    from diffblocks.single_file.pipeline import _encoder_config, text_encoder_state

    configs = standard_family(family)["components"]
    with skip_meta_init():
        components = {"unet": UNet2DConditionModel.from_config(configs["unet"]),
                      "vae": AutoencoderKL.from_config(configs["vae"])}
        for name, cls in (("text_encoder", CLIPTextModel), ("text_encoder_2", CLIPTextModelWithProjection)):
            if name in configs:
                components[name] = cls(CLIPTextConfig.from_dict(configs[name]))
    if family == "sd2":  # the real files carry a 24th OpenCLIP layer diffusers skips
        components["text_encoder"].config.num_hidden_layers = 23
    tensors: dict[str, torch.Tensor] = {}
    from diffblocks.models.single_file.models import original_state_dict

    tensors.update(original_state_dict(components["unet"], "model.diffusion_model."))
    tensors.update(original_state_dict(components["vae"], "first_stage_model."))
    for name in ("text_encoder", "text_encoder_2"):
        if name in components:
            tensors.update(text_encoder_state(components[name], family, name))
    if family == "sd2":
        for key in [k for k in tensors if ".resblocks.22." in k]:
            tensors[key.replace(".resblocks.22.", ".resblocks.23.")] = tensors[key]
    ckpt = Checkpoint.from_tensors(tensors)
    assert detect(list(ckpt), ckpt.shape).kind == family
    keys = set(ckpt)
    assert UNet2DConditionModel.config_class.from_dict(unet_config(keys, ckpt.shape, "model.diffusion_model.", family)) \
        == components["unet"].config
    assert AutoencoderKL.config_class.from_dict(vae_config(keys, ckpt.shape, "first_stage_model.", family)) \
        == components["vae"].config
    for name in ("text_encoder", "text_encoder_2"):
        if name in components:
            inferred = _encoder_config(ckpt, family, name, None).to_dict()
            standard = CLIPTextConfig.from_dict(configs[name]).to_dict()
            for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                        "projection_dim", "hidden_act", "vocab_size"):
                expected = 23 if (key == "num_hidden_layers" and family == "sd2") else standard[key]
                assert inferred[key] == expected, (name, key)


def test_bundled_tokenizer_pads_like_the_standard_ones() -> None:
    assert clip_tokenizer().pad_token == "<|endoftext|>"
    assert clip_tokenizer("!").pad_token_id == 0
    assert len(clip_tokenizer()) == 49408


def test_non_pipeline_files_get_one_clear_error(tmp_path: Path, tiny_sd_dir: Path) -> None:
    unet = UNet2DConditionModel.from_pretrained(tiny_sd_dir, subfolder="unet")
    file = unet.save_single_file(tmp_path / "unet.safetensors")
    with pytest.raises(CheckpointError, match=r"holds only a unet model, expected a whole SD"):
        read_pipeline_file(file)
    with pytest.raises(ValueError, match=r"needs components \['text_encoder'\]"):
        write_pipeline_file({"unet": unet, "vae": None}, tmp_path / "x.safetensors")
