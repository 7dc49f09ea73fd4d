"""The faces use the site's shared cache when the setting names one: two machines, one origin copy.

Each "machine" is its own HUBLOADER_HOME (settings, registry) and models folder. Its shared cache is
the ``shared_cache`` setting, saved through that machine's face (not the environment variable), and
its download goes through the face's own download path: the Model Hub app's job, or the ComfyUI
route's job. The fake hub counts the bytes its CDN sends.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

pytest.importorskip("gradio")

from hubloader.core import settings as config
from hubloader.core.folders import standalone_folders
from hubloader.faces import app as ui
from hubloader.faces.jobs import DONE, JobManager
from hubloader.sharedcache.stores import object_key
from tests.comfy_stub import folder_paths as stub_folder_paths
from tests.fakehub import FakeHub
from tests.test_comfyui_routes import Events, run_app, wait_job


def _machine(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on this process is the machine at ``root`` (HUBLOADER_HOME is read at call time)."""
    monkeypatch.setenv("HUBLOADER_HOME", str(root / "home"))


def _download_in_the_app(root: Path, share: Path, meta_id: int, monkeypatch: pytest.MonkeyPatch) -> Path:
    _machine(root, monkeypatch)
    hub = ui.ModelHub(standalone_folders(root / "models"))
    try:
        assert "⚠️" not in hub.save_settings(shared_cache=str(share))
        assert "named by the setting" in hub.settings_view()["shared_cache_status"]
        (meta,) = [m for m in hub.search("fleet", "CivitAI")[0] if m.extra.get("civitai_model_id") == meta_id]
        job = hub.jobs.wait(hub.start_download(meta)["id"], timeout=60)
    finally:
        hub.jobs.shutdown()
    assert job.state == DONE, job.error
    return Path(job.path)


def _download_in_comfyui(root: Path, share: Path, air: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    _machine(root, monkeypatch)
    stub_folder_paths.setup(root / "comfy")
    monkeypatch.setitem(sys.modules, "folder_paths", stub_folder_paths)
    landed: list[Path] = []

    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        saved = await (await client.post("/hubloader/settings", json={"shared_cache": str(share)})).json()
        assert saved["warnings"] == [] and "named by the setting" in saved["shared_cache_status"]
        response = await client.post("/hubloader/downloads", json={"ref": air, "kind": "loras"})
        assert response.status == 202, await response.text()
        job = await wait_job(client, (await response.json())["id"], timeout=60)
        assert job["state"] == DONE, job["error"]
        landed.append(Path(job["path"]))

    run_app(test)
    return landed[0]


@pytest.mark.parametrize("first", ["app", "comfyui"])
def test_two_machines_fetch_a_civitai_model_from_the_origin_once(
    first: str, hub_env: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "HUBLOADER_SHARED_CACHE" not in os.environ  # the setting alone must do it
    share = tmp_path / "share"
    share.mkdir()
    model_id, version_id = hub_env.add_civitai_model("Fleet LoRA", type="LORA")
    (file,) = hub_env.civitai.version(version_id)["files"]
    blob = hub_env.civitai.blobs[file["id"]]

    faces = {
        "app": lambda root: _download_in_the_app(root, share, model_id, monkeypatch),
        "comfyui": lambda root: _download_in_comfyui(
            root, share, f"urn:air:sdxl:lora:civitai:{model_id}@{version_id}", monkeypatch
        ),
    }
    second = "comfyui" if first == "app" else "app"
    paths = [faces[first](tmp_path / "machine-1"), faces[second](tmp_path / "machine-2")]

    assert paths[0] != paths[1]
    for path in paths:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == blob.sha256
        assert not list(path.parent.glob("*.part"))
    origin_bytes = sum(n for where, n in hub_env.bytes_sent.items() if where.startswith("/storage/"))
    assert origin_bytes == blob.size  # one copy from the origin for the whole site
    assert len([r for r in hub_env.requests if r.path.startswith("/api/download/")]) == 1
    assert (share / object_key(blob.sha256)).stat().st_size == blob.size
    for root in ("machine-1", "machine-2"):  # each machine kept its own setting
        monkeypatch.setenv("HUBLOADER_HOME", str(tmp_path / root / "home"))
        assert config.load_settings()["shared_cache"] == str(share)
