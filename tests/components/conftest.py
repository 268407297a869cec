"""Fixtures for the components tests: a local Hub and isolation (the tiny folders are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from diffblocks.components import clear_shared_components
from tests.components.hub_server import HubServer

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
