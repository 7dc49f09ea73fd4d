"""Shared fixtures. Every test gets its own HUBLOADER_HOME and HF cache, and no real tokens or endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

_ISOLATED_ENV = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "CIVITAI_API_TOKEN",
    "CIVITAI_API_KEY",
    "CIVITAI_ENDPOINT",
    "HUBLOADER_SHARED_CACHE",
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
