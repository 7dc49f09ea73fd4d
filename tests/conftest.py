"""Shared fixtures. Every test gets its own HUBLOADER_HOME and HF cache, and no real tokens or endpoints."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # imported lazily: aiohttp must not load for tests that don't use the fake hub
    from tests.fakehub import FakeHub

_ISOLATED_ENV = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "CIVITAI_API_TOKEN",
    "CIVITAI_API_KEY",
    "CIVITAI_ENDPOINT",
    "HUBLOADER_SHARED_CACHE",
    "HUBLOADER_ALLOWED_HOSTS",
)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private HUBLOADER_HOME and HF_HOME: tests never touch the user's settings, tokens or caches."""
    for name in _ISOLATED_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "hubloader-home"
    monkeypatch.setenv("HUBLOADER_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    yield home


@pytest.fixture(autouse=True)
def isolated_hf_constants(isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub reads its cache and token paths once, at import: repoint them for every test.

    Without this, every test after the first import would share the first test's HF cache, and a
    file cached by one test would hide a download error in the next.
    """
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is None:
        return  # not imported yet: the first import reads the env set by isolated_home
    hf_home = tmp_path / "hf-home"
    paths = {
        "HF_HOME": hf_home,
        "HF_HUB_CACHE": hf_home / "hub",
        "HF_ASSETS_CACHE": hf_home / "assets",
        "HF_XET_CACHE": hf_home / "xet",
        "HF_TOKEN_PATH": hf_home / "token",
        "HF_STORED_TOKENS_PATH": hf_home / "stored_tokens",
    }
    for name, path in paths.items():
        if hasattr(constants, name):
            monkeypatch.setattr(constants, name, str(path))


@pytest.fixture(scope="session")
def _fakehub_server() -> Iterator[FakeHub]:
    from tests.fakehub import FakeHub

    with FakeHub() as hub:
        yield hub


@pytest.fixture
def fakehub(_fakehub_server: FakeHub) -> FakeHub:
    """The loopback HF/CivitAI/CDN servers (one per session), reset to a clean state for this test."""
    _fakehub_server.reset()
    return _fakehub_server


@pytest.fixture
def hub_env(fakehub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    """``fakehub`` with HF_ENDPOINT and CIVITAI_ENDPOINT pointing at it (read at call time by hubloader.core.settings),
    and its CDN allowed as their storage host (the gate's ``allowed_hosts``, as a mirror's storage would be)."""
    monkeypatch.setenv("HF_ENDPOINT", fakehub.hf_url)
    monkeypatch.setenv("CIVITAI_ENDPOINT", fakehub.civitai_url)
    monkeypatch.setenv("HUBLOADER_ALLOWED_HOSTS", fakehub.cdn_url)
    return fakehub
