"""Image and mask pre-processing equal diffusers' VaeImageProcessor for PIL, NumPy and torch inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffblocks.presets.stages.images import postprocess_images, preprocess_image, preprocess_mask

from .parity import sample_image, sample_mask


def _processors():
    from diffusers.image_processor import VaeImageProcessor

    image = VaeImageProcessor(vae_scale_factor=8)
    mask = VaeImageProcessor(vae_scale_factor=8, do_normalize=False, do_binarize=True, do_convert_grayscale=True)
    return image, mask


def _image_inputs():
    pil = sample_image(48)
    array = np.asarray(pil, dtype=np.float32) / 255.0
    return {
        "pil": pil, "pil_list": [pil, sample_image(48, seed=1)], "np_hwc": array, "np_bhwc": array[None],
        "pt_chw": torch.from_numpy(array).permute(2, 0, 1), "pt_bchw": torch.from_numpy(array).permute(2, 0, 1)[None],
    }


@pytest.mark.parametrize("kind", list(_image_inputs()))
@pytest.mark.parametrize("size", [(48, 48), (32, 64)])
def test_preprocess_image_matches_diffusers(kind, size):
    image = _image_inputs()[kind]
    theirs = _processors()[0].preprocess(image, height=size[0], width=size[1])
    ours = preprocess_image(image=image, height=size[0], width=size[1])
    torch.testing.assert_close(ours, theirs.float(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["pil", "pil_rgb", "np_hw", "np_hw1", "pt_hw", "pt_1hw"])
def test_preprocess_mask_matches_diffusers(kind):
    pil = sample_mask(48)
    array = np.asarray(pil, dtype=np.float32) / 255.0
    mask = {
        "pil": pil, "pil_rgb": pil.convert("RGB"), "np_hw": array, "np_hw1": array[..., None],
        "pt_hw": torch.from_numpy(array), "pt_1hw": torch.from_numpy(array)[None],
    }[kind]
    theirs = _processors()[1].preprocess(mask, height=32, width=32)
    ours = preprocess_mask(mask_image=mask, height=32, width=32)
    torch.testing.assert_close(ours, theirs.float(), atol=0, rtol=0)


@pytest.mark.parametrize("output_type", ["np", "pt", "pil"])
def test_postprocess_matches_diffusers(output_type):
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2.4 - 1.2
    theirs = _processors()[0].postprocess(images, output_type=output_type)
    ours = postprocess_images(images=images, output_type=output_type)
    if output_type == "pil":
        assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(ours, theirs))
    else:
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
