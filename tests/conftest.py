"""Session-wide test settings and the tiny model folders several test packages share."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach the network: huggingface_hub and transformers stay offline unless a test
# points HF_ENDPOINT at the local fixture Hub server itself.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny models on a 2-core machine run several times faster on one thread (no
    oversubscription between intra-op threads and other processes)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _saved(factory: pytest.TempPathFactory, kind: str, seed: int = 0) -> Path:
    from tests.components.tiny_pipelines import save_pipeline

    return save_pipeline(kind, factory.mktemp("tiny") / f"{kind}-{seed}", seed=seed)


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SD 1.5-style folder with random weights, written by diffusers' save_pretrained."""
    return _saved(tmp_path_factory, "sd")


@pytest.fixture(scope="session")
def tiny_sd_seed1_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny SD layout with other random weights (seed 1): for tests that mix two folders."""
    return _saved(tmp_path_factory, "sd", seed=1)


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SDXL-style folder with random weights, written by diffusers' save_pretrained."""
    return _saved(tmp_path_factory, "sdxl")


@pytest.fixture(scope="session")
def tiny_flux_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Flux-style folder with random weights, written by diffusers' save_pretrained."""
    return _saved(tmp_path_factory, "flux")
