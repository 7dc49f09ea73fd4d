"""Storage and configuration faults (issue #18): a read-only HUBLOADER_HOME or model folder, a name or path too long
for the file system, a settings file of the wrong shape. Each is one line naming what failed, and nothing is lost:
the settings file and its tokens are kept, no half-written file gets a model's name, the route answers JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hubloader import pipeline
from hubloader.core import settings as config
from hubloader.core.errors import ConfigError, HubloaderError, IndexUnavailable, PickleNotAllowed
from hubloader.gate.fetch import fetch_file
from hubloader.gate.request import FileRequest
from tests.fakehub.modelfiles import safetensors_bytes
from tests.readonly import read_only
from tests.test_comfyui_routes import Events, wait_job
from tests.test_faces_security import comfy, run_app  # noqa: F401  (comfy: a fixture)
from tests.workflow_samples import node, ui_workflow

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "civitai-storage-fault-token-0123"


def _lora(seed: int = 0) -> bytes:
    return safetensors_bytes({"lora_up.weight": ("F16", [4, 4])}, seed=seed)


def _one_line(text: str) -> str:
    assert "\n" not in text.strip() and "Traceback" not in text and TOKEN not in text, text
    return text


# --- a read-only HUBLOADER_HOME ------------------------------------------------------------------------------


def test_saving_settings_to_a_read_only_home_is_one_line_and_keeps_the_file(isolated_home):
    config.save_settings({"civitai_token": config.Secret(TOKEN), "nsfw": True})
    before = config.settings_path().read_bytes()

    with read_only(isolated_home):
        with pytest.raises(ConfigError) as failed:
            config.save_settings({"nsfw": False})
        _one_line(str(failed.value))
        assert "cannot be written" in str(failed.value) and str(config.settings_path()) in str(failed.value)
        assert config.settings_path().read_bytes() == before
        assert config.civitai_token() == config.Secret(TOKEN)


def test_the_cli_on_a_read_only_home_answers_one_line(isolated_home):
    config.save_settings({"nsfw": True})
    with read_only(isolated_home):
        result = subprocess.run(
            [sys.executable, "-m", "hubloader", "cache", "--limit", "5"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(isolated_home) in result.stderr


def test_the_index_on_a_read_only_home_is_one_line(isolated_home):
    from hubloader.registry import ModelRegistry

    with read_only(isolated_home):
        with pytest.raises(IndexUnavailable) as failed:
            with ModelRegistry() as registry:
                registry.list_models()
    assert "models.db" in _one_line(str(failed.value))


def test_a_download_with_a_read_only_home_is_one_line_naming_the_home(hub_env, isolated_home, tmp_path):
    """HUBLOADER_HOME holds the download locks: read-only, the download stops before a byte, saying where."""
    url = hub_env.add_file("/files/home-ro.safetensors", _lora(seed=1))
    with read_only(isolated_home):
        with pytest.raises(HubloaderError) as failed:
            fetch_file(FileRequest(url=url, folder=tmp_path / "loras", name="home-ro.safetensors"))
    assert str(isolated_home) in _one_line(str(failed.value)) and "nothing was downloaded" in str(failed.value)
    assert not (tmp_path / "loras" / "home-ro.safetensors").exists()
    assert [r for r in hub_env.requests if r.path == "/files/home-ro.safetensors"] == []


def test_a_read_only_model_folder_is_one_line_and_fetches_nothing(hub_env, tmp_path):
    url = hub_env.add_file("/files/ro.safetensors", _lora(seed=2))
    folder = tmp_path / "loras"
    with read_only(folder):
        with pytest.raises(HubloaderError) as failed:
            fetch_file(FileRequest(url=url, folder=folder, name="ro.safetensors"))
        assert "ro.safetensors cannot be saved" in _one_line(str(failed.value)) and str(folder) in str(failed.value)
        assert list(folder.iterdir()) == []


# --- names and paths too long -----------------------------------------------------------------------------


def test_an_over_long_name_from_a_source_is_one_line(hub_env, tmp_path):
    url = hub_env.add_file("/files/long.safetensors", _lora(seed=3))
    hostile = "x" * 300 + ".safetensors"  # what a source may call its file; no file system takes it

    with pytest.raises(HubloaderError) as failed:
        fetch_file(FileRequest(url=url, folder=tmp_path, name=hostile))

    assert "nothing was downloaded" in _one_line(str(failed.value))
    assert [r for r in hub_env.requests if r.path == "/files/long.safetensors"] == []
    assert list(tmp_path.iterdir()) == []


def test_a_workflow_path_too_deep_is_one_json_line_from_the_routes(comfy, hub_env):  # noqa: F811
    """A workflow's model name keeps its subfolders; 30 levels of 200-byte names exceed any path limit."""
    deep = "/".join(["d" * 200] * 30) + "/deep.safetensors"
    url = hub_env.add_file("/files/deep.safetensors", _lora(seed=4))
    workflow = ui_workflow(
        [node(1, "LoraLoader", [deep, 1, 1])], models=[{"name": deep, "url": url, "directory": "loras"}]
    )

    async def test(client, events: Events, jobs) -> None:
        for route in ("/hubloader/missing", "/hubloader/missing/fetch"):
            response = await client.post(route, json={"workflow": workflow})
            assert response.status == 503, await response.text()
            assert "too long" in _one_line((await response.json())["error"])
        assert [r for r in hub_env.requests if r.path == "/files/deep.safetensors"] == []

    run_app(test)


# --- a settings file of the wrong shape ---------------------------------------------------------------------


def test_wrong_typed_settings_fall_back_to_defaults_and_trust_nothing(hub_env, tmp_path):
    config.settings_path().parent.mkdir(parents=True, exist_ok=True)
    config.settings_path().write_text(
        json.dumps({"allow_pickle": "yes", "max_connections": "eight", "nsfw": 1, "cache_limit_gb": "all"})
    )
    url = hub_env.add_file("/files/wrong.ckpt", b"\x80\x04K\x01.")

    with pytest.raises(PickleNotAllowed):
        pipeline.fetch(url, tmp_path, kind="checkpoints")  # "yes" is not true: pickles stay refused
    data = _lora(seed=5)
    placed = pipeline.fetch(hub_env.add_file("/files/right.safetensors", data), tmp_path, kind="loras")
    assert placed.path.read_bytes() == data  # max_connections "eight": the default, not a crash


@pytest.mark.parametrize("content", ['["a", "list"]', '{"nsfw": tru', "42"])
def test_a_settings_file_of_the_wrong_shape_is_kept_and_the_route_answers_one_line(comfy, content):  # noqa: F811
    path = config.settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)

    async def test(client, events: Events, jobs) -> None:
        shown = await client.get("/hubloader/settings")
        assert shown.status == 200 and (await shown.json())["nsfw"] is False
        saved = await client.post("/hubloader/settings", json={"nsfw": True})
        assert saved.status == 400
        assert "nothing was saved" in _one_line((await saved.json())["error"])

    run_app(test)
    assert path.read_text() == content


# --- ComfyUI routes on a read-only home ---------------------------------------------------------------------


def test_a_route_on_a_read_only_home_answers_one_json_line(comfy, isolated_home):  # noqa: F811
    config.save_settings({"civitai_token": config.Secret(TOKEN)})
    before = config.settings_path().read_bytes()

    async def test(client, events: Events, jobs) -> None:
        saved = await client.post("/hubloader/settings", json={"nsfw": True, "civitai_token": TOKEN})
        assert saved.status == 400, await saved.text()
        assert "cannot be written" in _one_line((await saved.json())["error"])

    with read_only(isolated_home):
        run_app(test)
        assert config.settings_path().read_bytes() == before


def test_a_queued_download_into_a_read_only_folder_fails_in_one_line(comfy, hub_env):  # noqa: F811
    data = _lora(seed=6)
    url = hub_env.add_file("/files/queued.safetensors", data)
    import hashlib

    workflow = ui_workflow(
        [node(1, "LoraLoader", ["queued.safetensors", 1, 1])],
        models=[{"name": "queued.safetensors", "url": url, "directory": "loras",
                 "hash": hashlib.sha256(data).hexdigest(), "hash_type": "SHA256"}],
    )  # fmt: skip
    loras = Path(comfy.get_folder_paths("loras")[0])

    async def test(client, events: Events, jobs) -> None:
        response = await client.post("/hubloader/missing/fetch", json={"workflow": workflow})
        assert response.status == 202, await response.text()
        (job,) = [await wait_job(client, j["id"]) for j in (await response.json())["downloads"]]
        assert job["state"] == "failed" and "queued.safetensors" in _one_line(job["error"])
        assert "cannot be saved" in job["error"]

    with read_only(loras):
        run_app(test)
        assert list(loras.iterdir()) == []
