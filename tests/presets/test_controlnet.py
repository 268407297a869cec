"""ControlNet / T2I-Adapter presets against diffusers' pipelines on tiny random weights (the
ControlNets' zero convs randomised so the residuals matter): images within 1e-4 (fp32, np)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from diffblocks.models import ControlNetModel
from diffblocks.models.multi_controlnet import MultiControlNetModel
from diffblocks.pipeline import Pipeline
from tests.presets.controlnet_fixtures import control_image, save_control_pipeline
from tests.presets.parity import sample_image, sample_mask

TOLERANCE = 1e-4
DIFFUSERS = {
    ("sd15", "text2img"): "StableDiffusionControlNetPipeline",
    ("sd15", "img2img"): "StableDiffusionControlNetImg2ImgPipeline",
    ("sd15", "inpaint"): "StableDiffusionControlNetInpaintPipeline",
    ("sdxl", "text2img"): "StableDiffusionXLControlNetPipeline",
    ("sdxl", "img2img"): "StableDiffusionXLControlNetImg2ImgPipeline",
    ("sdxl", "inpaint"): "StableDiffusionXLControlNetInpaintPipeline",
}
_FOLDERS: dict[tuple[str, ...], tuple[Path, list[Any]]] = {}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory):
    def get(kind: str, family: str, n: int = 1) -> tuple[Path, list[Any]]:
        key = (kind, family, str(n))
        if key not in _FOLDERS:
            _FOLDERS[key] = save_control_pipeline(kind, family, tmp_path_factory.mktemp(f"{kind}-{family}-{n}"), n)
        return _FOLDERS[key]

    return get


def _diffusers(folder: Path, class_name: str, nets: list[Any] | None = None) -> Any:
    import diffusers

    extra = {"controlnet": diffusers.MultiControlNetModel(nets)} if nets and len(nets) > 1 else {}
    pipe = getattr(diffusers, class_name).from_pretrained(str(folder), **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe: Any, ours: bool, **inputs: Any) -> np.ndarray:
    inputs = {"num_inference_steps": 2, "output_type": "np", "generator": torch.Generator().manual_seed(0), **inputs}
    out = pipe(**inputs, progress=False) if ours else pipe(**inputs)
    return np.asarray(out.images)


def _workflow_inputs(workflow: str) -> dict[str, Any]:
    if workflow == "text2img":
        return {"image": control_image()}
    extra = {"mask_image": sample_mask(32)} if workflow == "inpaint" else {}
    return {"image": sample_image(32), "control_image": control_image(), **extra}


CASES = {
    "plain": {},
    "scale_window": {"num_inference_steps": 4, "controlnet_conditioning_scale": 0.7, "control_guidance_start": 0.3, "control_guidance_end": 0.8},
    "guess_mode": {"guess_mode": True, "guidance_scale": 6.0},
    "two_prompts_cfg": {"prompt": ["a cat", "a dog"], "negative_prompt": ["blurry", "dark"], "num_images_per_prompt": 2},
    "image_per_prompt": {"prompt": ["a cat", "a dog"], "image": [control_image(0), control_image(1)], "num_images_per_prompt": 2},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_sd15_controlnet_text2img(folders, case: str) -> None:
    folder, _ = folders("controlnet", "sd15")
    ours = Pipeline.from_pretrained(folder)
    assert ours.graph.name == "sd15-controlnet"  # picked from the index's StableDiffusionControlNetPipeline
    inputs = {"prompt": "a cat", **_workflow_inputs("text2img"), **CASES[case]}
    got, want = _run(ours, True, **inputs), _run(_diffusers(folder, DIFFUSERS[("sd15", "text2img")]), False, **inputs)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= TOLERANCE
    off = _run(ours, True, **{**inputs, "controlnet_conditioning_scale": 0.0})
    assert np.abs(got - off).max() > 1e-2  # the ControlNet changes the image


@pytest.mark.parametrize(("family", "workflow"), [("sd15", "img2img"), ("sd15", "inpaint"), ("sdxl", "text2img"), ("sdxl", "img2img"), ("sdxl", "inpaint")])
def test_controlnet_workflows(folders, family: str, workflow: str) -> None:
    folder, _ = folders("controlnet", family)
    suffix = "" if workflow == "text2img" else f"-{workflow}"
    ours = Pipeline.from_pretrained(folder, preset=f"{family}-controlnet{suffix}")
    inputs = {"prompt": "a cat", **_workflow_inputs(workflow), "controlnet_conditioning_scale": 0.8}
    got, want = _run(ours, True, **inputs), _run(_diffusers(folder, DIFFUSERS[(family, workflow)]), False, **inputs)
    assert np.abs(got - want).max() <= TOLERANCE


@pytest.mark.parametrize("case", ["guess_mode", "two_prompts_cfg"])
def test_sdxl_controlnet_guess_mode_and_batches(folders, case: str) -> None:
    """SDXL: in guess mode the ControlNet gets the conditional half of the pooled embeddings and time ids too."""
    folder, _ = folders("controlnet", "sdxl")
    ours = Pipeline.from_pretrained(folder)
    assert ours.graph.name == "sdxl-controlnet"
    inputs = {"prompt": "a cat", "image": control_image(), **CASES[case]}
    got, want = _run(ours, True, **inputs), _run(_diffusers(folder, DIFFUSERS[("sdxl", "text2img")]), False, **inputs)
    assert np.abs(got - want).max() <= TOLERANCE
    again = _run(ours, True, **inputs)  # a second run of the same pipeline: nothing left over from the first
    assert np.array_equal(got, again)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_multi_controlnet(folders, family: str) -> None:
    folder, nets = folders("controlnet", family, 2)
    ref = _diffusers(folder, DIFFUSERS[(family, "text2img")], nets)
    ours = Pipeline.from_pretrained(folder)  # the index names a MultiControlNetModel: controlnet/, controlnet_1/
    assert ours.graph.name == f"{family}-controlnet" and len(ours.components["controlnet"].nets) == 2
    if family == "sdxl":  # or nets of one's own choosing
        ours.components.set("controlnet", MultiControlNetModel([ControlNetModel.from_pretrained(folder / name) for name in ("net0", "net1")]))
    inputs = {
        "prompt": "a cat", "image": [control_image(0), control_image(1)], "controlnet_conditioning_scale": [0.7, 1.2],
        "control_guidance_start": [0.0, 0.5], "control_guidance_end": [0.5, 1.0], "num_inference_steps": 4,
    }
    got, want = _run(ours, True, **inputs), _run(ref, False, **inputs)
    assert np.abs(got - want).max() <= TOLERANCE


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_t2i_adapter(folders, family: str) -> None:
    import diffusers

    folder, _ = folders("adapter", family)
    ours = Pipeline.from_pretrained(folder)
    assert ours.graph.name == f"{family}-adapter"
    cls = "StableDiffusionXLAdapterPipeline" if family == "sdxl" else "StableDiffusionAdapterPipeline"
    ref = getattr(diffusers, cls).from_pretrained(str(folder))
    ref.set_progress_bar_config(disable=True)
    inputs = {"prompt": "a cat", "image": control_image(), "adapter_conditioning_scale": 0.8, "num_inference_steps": 3}
    if family == "sdxl":
        inputs["adapter_conditioning_factor"] = 0.5
    got, want = _run(ours, True, **inputs), _run(ref, False, **inputs)
    assert np.abs(got - want).max() <= TOLERANCE
    off = _run(ours, True, **{**inputs, "adapter_conditioning_scale": 0.0})
    assert np.abs(got - off).max() > 1e-2
