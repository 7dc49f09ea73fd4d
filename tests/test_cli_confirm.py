"""``hubloader resolve --download`` and a host outside HuggingFace, CivitAI and the configured ones: fetched only
for files with a published SHA256, only when the user confirms the host (``--allow-host``, or an answer on a
terminal), never otherwise. The CLI runs as a user runs it, against the loopback fake servers."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hubloader.gate.policy import host_key
from tests.fakehub.modelfiles import safetensors_bytes
from tests.test_cli import REPO_ROOT, hubloader
from tests.workflow_samples import node, ui_workflow

DATA = safetensors_bytes({"lora_up.weight": ("F16", [4, 4])}, seed=21)


@pytest.fixture
def foreign(hub_env, monkeypatch: pytest.MonkeyPatch):
    """The fake hubs with their CDN *not* allowed: to the gate it is a host like any other."""
    monkeypatch.delenv("HUBLOADER_ALLOWED_HOSTS", raising=False)
    return hub_env


def _workflow(hub, tmp_path: Path) -> tuple[Path, str]:
    hashed = hub.add_file("/files/hashed.safetensors", DATA)
    unhashed = hub.add_file("/files/unhashed.safetensors", DATA)
    models = [
        {"name": "hashed.safetensors", "url": hashed, "directory": "loras", "hash": hashlib.sha256(DATA).hexdigest(),
         "hash_type": "SHA256"},
        {"name": "unhashed.safetensors", "url": unhashed, "directory": "loras"},
    ]  # fmt: skip
    nodes = [node(1, "LoraLoader", ["hashed.safetensors", 1, 1]), node(2, "LoraLoader", ["unhashed.safetensors", 1, 1])]
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(ui_workflow(nodes, models=models)))
    return path, host_key(hashed)


def _asked(hub, name: str) -> list:
    return [r for r in hub.requests if r.path == f"/files/{name}"]


def test_without_a_confirmation_nothing_is_fetched_from_a_foreign_host(foreign, tmp_path):
    workflow, _ = _workflow(foreign, tmp_path)

    result = hubloader("resolve", str(workflow), "--download", "--models-dir", str(tmp_path / "models"))

    assert result.returncode == 1 and "not a known model host" in result.stderr
    assert _asked(foreign, "hashed.safetensors") == [] and _asked(foreign, "unhashed.safetensors") == []


def test_allow_host_fetches_the_files_with_a_published_hash_only(foreign, tmp_path):
    workflow, host = _workflow(foreign, tmp_path)
    models = tmp_path / "models"

    result = hubloader("resolve", str(workflow), "--download", "--models-dir", str(models), "--allow-host", host)

    assert (models / "loras" / "hashed.safetensors").read_bytes() == DATA
    assert result.returncode == 1 and "SHA256" in result.stderr  # the unhashed one, refused whatever the flag
    assert not (models / "loras" / "unhashed.safetensors").exists() and _asked(foreign, "unhashed.safetensors") == []


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal is POSIX")
@pytest.mark.parametrize("answer, fetched", [("y", True), ("n", False)])
def test_on_a_terminal_the_user_is_asked_per_host_with_the_hash(foreign, tmp_path, answer, fetched):
    import pty

    workflow, host = _workflow(foreign, tmp_path)
    models = tmp_path / "models"
    controller, terminal = pty.openpty()
    os.write(controller, f"{answer}\n".encode())
    try:
        result = subprocess.run(
            [sys.executable, "-m", "hubloader", "resolve", str(workflow), "--download", "--models-dir", str(models)],
            cwd=REPO_ROOT,
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=90,
        )
    finally:
        os.close(terminal)
        os.close(controller)

    digest = hashlib.sha256(DATA).hexdigest()
    assert f"Download hashed.safetensors from host {host} (sha256 {digest})? [y/N]" in result.stdout
    assert "unhashed.safetensors from host" not in result.stdout  # no hash: never asked, never fetched
    assert (models / "loras" / "hashed.safetensors").exists() is fetched
    assert _asked(foreign, "unhashed.safetensors") == []


def test_a_lockfile_url_on_a_foreign_host_needs_allow_host(foreign, tmp_path):
    """A lockfile always carries each file's SHA256; its URL on another host still waits for the user's word."""
    url = foreign.add_file("/files/locked.safetensors", DATA)
    entry = {"kind": "loras", "name": "locked.safetensors", "size": len(DATA), "sha256": hashlib.sha256(DATA).hexdigest(),
             "url": url}  # fmt: skip
    lockfile = tmp_path / "workflow.lock.json"
    lockfile.write_text(json.dumps({"lockfile_version": 1, "workflow": {"name": "w.json"}, "models": [entry]}))
    models = tmp_path / "models"

    refused = hubloader("resolve", str(lockfile), "--download", "--models-dir", str(models))
    assert refused.returncode == 1 and f"--allow-host {host_key(url)}" in refused.stdout
    assert _asked(foreign, "locked.safetensors") == []

    allowed = hubloader(
        "resolve", str(lockfile), "--download", "--models-dir", str(models), "--allow-host", host_key(url)
    )
    assert allowed.returncode == 0, allowed.stderr
    assert (models / "loras" / "locked.safetensors").read_bytes() == DATA
