"""Fixtures for the components tests: tiny pipeline folders (built once), a local Hub, isolation."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from diffblocks.components import clear_shared_components
from diffblocks.registry import components as registry
from tests.components.hub_server import HubServer
from tests.components.tiny_pipelines import save_pipeline

# Port 9 (discard) on loopback: any request that escapes a test's own server fails fast
# instead of reaching the real Hub.
DEAD_ENDPOINT = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HF_ENDPOINT", DEAD_ENDPOINT)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # only the `hub` fixture goes online, to its own server
    clear_shared_components()
    yield
    clear_shared_components()


def _reference_fallbacks() -> list[tuple[str, str]]:
    """Built-in diffusers hints whose diffblocks class cannot be imported yet.

    The models and schedulers are written in parallel with this package; until one exists,
    tests load that component with diffusers' class registered as a plugin (the loading
    path under test is the same). Once ours exists, ours is used.
    """
    missing = []
    for library, name in registry.builtin_type_hints():
        if library != "diffusers":
            continue
        try:
            registry.resolve_component_class(library, name)
        except registry.ComponentTypeError:
            missing.append((library, name))
    return missing


@pytest.fixture(scope="session", autouse=True)
def reference_fallbacks() -> Iterator[list[tuple[str, str]]]:
    diffusers = importlib.import_module("diffusers")
    used = []
    for library, name in _reference_fallbacks():
        cls = getattr(diffusers, name, None)
        if cls is not None:
            registry.register_component_class(library, name, cls)
            used.append((library, name))
    yield used
    for library, name in used:
        registry.unregister_component_class(library, name)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-pipelines")


def _built(root: Path, kind: str, seed: int = 0) -> Path:
    folder = root / f"{kind}-{seed}"
    if not (folder / "model_index.json").is_file():
        save_pipeline(kind, folder, seed=seed)
    return folder


@pytest.fixture(scope="session")
def tiny_sd(tiny_root: Path) -> Path:
    return _built(tiny_root, "sd")


@pytest.fixture(scope="session")
def tiny_sd_seed1(tiny_root: Path) -> Path:
    return _built(tiny_root, "sd", seed=1)


@pytest.fixture(scope="session")
def tiny_sdxl(tiny_root: Path) -> Path:
    return _built(tiny_root, "sdxl")


@pytest.fixture(scope="session")
def tiny_flux(tiny_root: Path) -> Path:
    return _built(tiny_root, "flux")


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A fresh local Hub per test, with HF_ENDPOINT pointing at it and offline mode off."""
    from huggingface_hub import constants

    with HubServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        # huggingface_hub reads HF_HUB_OFFLINE once, at import (tests/conftest.py sets it).
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        yield server
