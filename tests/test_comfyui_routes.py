"""The /hubloader routes over aiohttp's test client, against the loopback hub servers and real folders."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hubloader.faces.jobs import CANCELLED, DONE, FAILED, JobManager
from tests.comfy_stub import folder_paths as stub_folder_paths
from tests.fakehub.modelfiles import kohya_lora, safetensors_bytes


@pytest.fixture
def comfy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    stub_folder_paths.setup(tmp_path / "comfy")
    monkeypatch.setitem(sys.modules, "folder_paths", stub_folder_paths)
    return stub_folder_paths


class Events(list):
    """What the page would receive over the websocket."""

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        self.append((event, dict(data)))

    def names(self) -> list[str]:
        return [e for e, _ in self]


def run_app(test: Callable[[TestClient, Events, JobManager], Awaitable[None]]) -> None:
    from nodes.routes import HubRoutes

    async def main() -> None:
        jobs, events = JobManager(max_workers=2), Events()
        routes = web.RouteTableDef()
        HubRoutes(jobs, events).add_to(routes)
        app = web.Application()
        app.add_routes(routes)
        async with TestClient(TestServer(app)) as client:
            try:
                await test(client, events, jobs)
            finally:
                jobs.shutdown()

    asyncio.run(main())


async def wait_job(client: TestClient, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = (await (await client.get("/hubloader/downloads")).json())["downloads"]
        job = next(j for j in jobs if j["id"] == job_id)
        if job["state"] in (DONE, FAILED, CANCELLED):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


@pytest.mark.hf
def test_download_from_huggingface_lands_in_the_kind_folder_and_refreshes_combos(comfy, hub_env):
    data = safetensors_bytes(kohya_lora())
    hub_env.add_hf_repo("someone/styles", files={"loras/ink.safetensors": data})

    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        assert comfy.get_filename_list("loras") == []  # cached listing, refreshed after the download
        response = await client.post(
            "/hubloader/downloads", json={"ref": "someone/styles/loras/ink.safetensors", "kind": "loras"}
        )
        assert response.status == 202, await response.text()
        job = await wait_job(client, (await response.json())["id"])
        assert job["state"] == DONE, job["error"]
        assert job["filename"] == "ink.safetensors"
        placed = Path(comfy.get_folder_paths("loras")[0]) / "ink.safetensors"
        assert placed.read_bytes() == data
        assert "ink.safetensors" in comfy.get_filename_list("loras")
        assert "hubloader.models.changed" in events.names()
        assert ("hubloader.download.state", "done") in [(e, d["state"]) for e, d in events if "state" in d]
        library = await (await client.get("/hubloader/library?kind=loras")).json()
        assert [m["name"] for m in library["models"]] == ["ink.safetensors"]
        info = await (await client.get("/hubloader/model?kind=loras&name=ink.safetensors")).json()
        assert info["exists"] is True and info["url"].endswith("/resolve/main/loras/ink.safetensors")

    run_app(test)


@pytest.mark.hf
def test_a_download_named_like_a_different_local_file_lands_apart_under_its_combo_name(comfy, hub_env):
    data = safetensors_bytes(kohya_lora(), seed=71)
    hub_env.add_hf_repo("someone/styles", files={"model.safetensors": data})
    loras = Path(comfy.get_folder_paths("loras")[0])
    loras.mkdir(parents=True, exist_ok=True)
    (loras / "model.safetensors").write_bytes(safetensors_bytes(kohya_lora(), seed=72))  # another file of that name

    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        body = {"ref": "someone/styles/model.safetensors", "kind": "loras"}
        response = await client.post("/hubloader/downloads", json=body)
        assert response.status == 202, await response.text()
        job = await wait_job(client, (await response.json())["id"])
        assert job["state"] == DONE, job["error"]
        placed = loras / "someone__styles" / "model.safetensors"
        assert job["path"] == str(placed) and placed.read_bytes() == data
        assert job["filename"] == "someone__styles/model.safetensors"  # the name the loader combo lists
        assert "someone__styles/model.safetensors" in comfy.get_filename_list("loras")
        changed = [d for e, d in events if e == "hubloader.models.changed"]
        assert changed[-1]["name"] == "someone__styles/model.safetensors"
        # What the page writes into properties.models for the combo's value: the placed name and its URL.
        info = await (await client.get("/hubloader/model?kind=loras&name=someone__styles/model.safetensors")).json()
        assert info["exists"] is True and info["url"].endswith("/someone/styles/resolve/main/model.safetensors")
        assert info["sha256"] == hashlib.sha256(data).hexdigest()

    run_app(test)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"ref": "someone/styles/x.safetensors", "kind": "custom_nodes"}, 400, "not a ComfyUI model folder"),
        ({"ref": "someone/styles/x.safetensors", "kind": "../../etc"}, 400, "not a ComfyUI model folder"),
        ({"ref": "http://evil.example/x.safetensors", "kind": "loras"}, 400, "neither a CivitAI nor a HuggingFace URL"),
        ({"ref": "file:///etc/passwd", "kind": "loras"}, 400, "not an http(s) URL"),
        ({"ref": "", "kind": "loras"}, 400, "Empty model reference"),
    ],
)
def test_download_refuses_other_hosts_and_folders(comfy, body, status, needle):
    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        response = await client.post("/hubloader/downloads", json=body)
        assert response.status == status
        assert needle in (await response.json())["error"]
        assert jobs.list() == []

    run_app(test)


def test_model_info_refuses_names_outside_the_folder(comfy):
    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        response = await client.get("/hubloader/model?kind=loras&name=../../secret.safetensors")
        assert response.status == 400
        response = await client.get("/hubloader/model?kind=nope&name=a.safetensors")
        assert response.status == 400

    run_app(test)


def test_tokens_are_write_only(comfy):
    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        shown = await (await client.get("/hubloader/settings")).json()
        assert shown["hf_token"] == "not set"
        response = await client.post("/hubloader/settings", json={"hf_token": "hf_supersecretvalue1234567890"})
        text = await response.text()
        assert response.status == 200 and "supersecret" not in text
        assert (await (await client.get("/hubloader/settings")).json())["hf_token"] == "set"
        refused = await client.post("/hubloader/settings", json={"models_dir": "/tmp/elsewhere"})
        assert refused.status == 400

    run_app(test)


def test_shared_cache_setting_is_checked_saved_shown_and_cleared(comfy, tmp_path):
    from hubloader.core import settings as config

    share = tmp_path / "share"
    share.mkdir()

    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        shown = await (await client.get("/hubloader/settings")).json()
        assert shown["shared_cache"] is None and shown["shared_cache_status"].startswith("No shared cache")
        response = await client.post("/hubloader/settings", json={"shared_cache": f" {share} "})
        saved = await response.json()
        assert response.status == 200 and saved["warnings"] == []
        assert saved["shared_cache"] == str(share) == config.load_settings()["shared_cache"]
        assert saved["shared_cache_status"] == f"Downloads go through the shared cache {share} (named by the setting)."

        for bad, needle in (("ftp://x", "Unsupported shared cache 'ftp://x'"), (42, "folder path or s3://")):
            refused = await client.post("/hubloader/settings", json={"shared_cache": bad})
            assert refused.status == 400 and needle in (await refused.json())["error"]
        assert config.load_settings()["shared_cache"] == str(share)

        missing = await (await client.post("/hubloader/settings", json={"shared_cache": str(tmp_path / "nope")})).json()
        assert len(missing["warnings"]) == 1 and "does not exist here" in missing["warnings"][0]
        cleared = await (await client.post("/hubloader/settings", json={"shared_cache": ""})).json()
        assert cleared["shared_cache"] is None and config.load_settings()["shared_cache"] is None

    run_app(test)


def test_missing_models_route_reports_local_and_missing(comfy):
    lora_dir = Path(comfy.get_folder_paths("loras")[0])
    (lora_dir / "sub").mkdir()
    (lora_dir / "sub" / "present.safetensors").write_bytes(safetensors_bytes(kohya_lora()))
    workflow = {
        "nodes": [
            {"id": 1, "type": "LoraLoader", "mode": 0, "widgets_values": ["present.safetensors", 1, 1]},
            {"id": 2, "type": "LoraLoader", "mode": 0, "widgets_values": ["absent.safetensors", 1, 1]},
        ]
    }

    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        response = await client.post("/hubloader/missing?resolve=0", json={"workflow": workflow})
        assert response.status == 200, await response.text()
        items = {i["reference"]["name"]: i for i in (await response.json())["items"]}
        assert items["present.safetensors"]["status"] == "found_elsewhere"
        assert items["present.safetensors"]["use_as"] == str(Path("sub/present.safetensors"))
        assert items["absent.safetensors"]["status"] == "unresolved"
        bad = await client.post("/hubloader/missing", json={"workflow": "not a workflow"})
        assert bad.status == 400

    run_app(test)


def test_node_inputs_route_tells_the_page_which_widget_to_watch(comfy):
    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        spec = await (await client.get("/hubloader/nodes")).json()
        assert spec["HubloaderLoraLoader"] == {"kind": "loras", "input": "lora_name"}
        assert spec["HubloaderCheckpointLoader"] == {"kind": "checkpoints", "input": "ckpt_name"}

    run_app(test)


# -- the job queue on its own ------------------------------------------------------------------------------


def test_jobs_report_progress_then_done():
    seen: list[tuple[str, str]] = []
    jobs = JobManager(max_workers=1)
    jobs.subscribe(lambda event, job: seen.append((event, job["state"])))

    def work(progress, cancel):
        for i in range(1, 4):
            progress(i * 10, 30)
        return Path("/models/loras/x.safetensors")

    job = jobs.wait(jobs.submit("x", work, kind="loras", ref="a/b/x.safetensors").id, timeout=10)
    assert job.state == DONE and job.filename == "x.safetensors" and job.done_bytes == 30
    assert seen[0] == ("state", "queued") and seen[-1] == ("state", "done")
    jobs.shutdown()


def test_jobs_cancel_a_running_download_and_dedupe_the_same_reference():
    from hubloader.core.errors import Cancelled

    started = threading.Event()

    def work(progress, cancel):
        started.set()
        if not cancel.wait(10):
            raise AssertionError("never cancelled")
        raise Cancelled("Download cancelled.")

    jobs = JobManager(max_workers=1)
    first = jobs.submit("x", work, kind="loras", ref="civitai:1@2")
    assert jobs.submit("x", work, kind="loras", ref="civitai:1@2") is first
    queued = jobs.submit("y", work, kind="loras", ref="civitai:3@4")
    assert started.wait(10)
    assert jobs.cancel(queued.id) and queued.state == CANCELLED  # never started
    assert jobs.cancel(first.id)
    assert jobs.wait(first.id, timeout=10).state == CANCELLED
    assert "partial file was kept" in first.error
    assert not jobs.cancel(first.id)
    jobs.shutdown()


def test_jobs_turn_errors_into_failed_with_the_message():
    from hubloader.core.errors import NotFound

    def work(progress, cancel):
        raise NotFound("CivitAI has no version 9.")

    jobs = JobManager()
    job = jobs.wait(jobs.submit("x", work).id, timeout=10)
    assert job.state == FAILED and "no version 9" in job.error
    jobs.shutdown()


def test_civitai_download_by_air_carries_trigger_words_and_weight(comfy, hub_env):
    model_id, version_id = hub_env.add_civitai_model(
        "Ink Style", trained_words=["inkstyle", "lineart"], settings={"strength": 0.7}
    )

    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        ref = f"urn:air:sdxl:lora:civitai:{model_id}@{version_id}"
        response = await client.post("/hubloader/downloads", json={"ref": ref, "type": "lora"})
        assert response.status == 202, await response.text()
        job = await wait_job(client, (await response.json())["id"])
        assert job["state"] == DONE, job["error"]
        assert job["kind"] == "loras"
        info = await (await client.get(f"/hubloader/model?kind=loras&name={job['filename']}")).json()
        assert info["trigger_words"] == ["inkstyle", "lineart"]
        assert info["recommended_weight"] == 0.7
        assert info["url"] == f"{hub_env.civitai_url}/api/download/models/{version_id}"
        assert len(info["sha256"]) == 64

    run_app(test)


def test_search_both_sources_with_filters(comfy, hub_env):
    hub_env.add_civitai_model("Ink Style", trained_words=["inkstyle"])
    hub_env.add_civitai_model("Ink Checkpoint", type="Checkpoint")

    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        response = await client.get("/hubloader/search?q=ink&source=civitai&type=lora")
        assert response.status == 200, await response.text()
        body = await response.json()
        names = [r["name"] for r in body["results"]]
        assert "Ink Style" in names and "Ink Checkpoint" not in names
        card = next(r for r in body["results"] if r["name"] == "Ink Style")
        assert card["kind"] == "loras" and card["trigger_words"] == ["inkstyle"] and card["reference"]
        bad = await client.get("/hubloader/search?q=ink&type=spaceship")
        assert bad.status == 400
        newest = await client.get("/hubloader/search?q=ink&source=civitai&sort=newest")
        assert newest.status == 200, await newest.text()
        asked = [r.query for r in hub_env.requests if r.path == "/api/v1/models"]
        assert "sort=Newest" in asked[-1]  # the hub is asked for its newest, not a page of its most popular

    run_app(test)


@pytest.mark.hf
@pytest.mark.parametrize("source", ["civitai", "huggingface"])
def test_cancelling_a_download_keeps_the_part_and_asking_again_resumes(comfy, hub_env, source, monkeypatch):
    monkeypatch.setattr("nodes.fetch._fetched", {})  # a fresh ComfyUI process: no earlier test's fetch
    data = safetensors_bytes({"w": ("F32", (2048, 1024))}, seed=21)  # 8 MiB, sent at 2 MiB/s per connection
    if source == "civitai":
        model_id, version_id = hub_env.add_civitai_model(
            "Big Ink", files=[{"name": "big_ink.safetensors", "data": data}]
        )
        ref = f"civitai:{model_id}@{version_id}"
        partial_in = Path(comfy.get_folder_paths("loras")[0])  # the engine writes beside the final name
    else:
        hub_env.add_hf_repo("someone/big-ink", files={"big_ink.safetensors": data})
        ref = "someone/big-ink/big_ink.safetensors"
        partial_in = Path(os.environ["HF_HUB_CACHE"])  # into the HF cache's blobs, then linked
    hub_env.faults.update(bandwidth_per_connection=2 * 1024 * 1024)

    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        started = await client.post("/hubloader/downloads", json={"ref": ref, "kind": "loras"})
        job_id = (await started.json())["id"]
        while not jobs.get(job_id).done_bytes:  # the first bytes are on disk
            assert jobs.get(job_id).state not in (DONE, FAILED), jobs.get(job_id).error
            await asyncio.sleep(0.02)
        assert (await client.post(f"/hubloader/downloads/{job_id}/cancel")).status == 200
        job = await wait_job(client, job_id)
        assert job["state"] == CANCELLED and "kept" in job["error"]
        assert (
            list(partial_in.rglob("*.part"))
            and not (Path(comfy.get_folder_paths("loras")[0]) / "big_ink.safetensors").exists()
        )

        hub_env.faults.update(bandwidth_per_connection=None)
        hub_env.bytes_sent.clear()
        again = await client.post("/hubloader/downloads", json={"ref": ref, "kind": "loras"})
        job = await wait_job(client, (await again.json())["id"])
        assert job["state"] == DONE, job["error"]
        assert (Path(comfy.get_folder_paths("loras")[0]) / "big_ink.safetensors").read_bytes() == data
        assert hub_env.bytes_sent.total() < len(data)  # resumed from the kept part

    run_app(test)


def test_a_failed_job_carries_the_sidebars_advice():
    from hubloader.core.errors import CIVITAI, AuthRequired
    from hubloader.faces.advice import COMFYUI

    def work(progress, cancel):
        raise AuthRequired("civitai:42: CivitAI refused the API key (expired).", service=CIVITAI)

    jobs = JobManager(face=COMFYUI)
    job = jobs.wait(jobs.submit("x", work).id, timeout=10)
    assert job.state == FAILED and job.error.endswith("Set the CivitAI token in the Model Hub sidebar → Settings.")
    jobs.shutdown()


def test_model_info_answers_when_the_index_is_corrupt(comfy):
    """A corrupt models.db must not turn the properties panel's lookup into an HTTP 500: the file is still there."""
    lora_dir = Path(comfy.get_folder_paths("loras")[0])
    (lora_dir / "here.safetensors").write_bytes(safetensors_bytes(kohya_lora()))
    home = Path(os.environ["HUBLOADER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "models.db").write_bytes(b"not a database " * 100)

    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        response = await client.get("/hubloader/model?kind=loras&name=here.safetensors")
        assert response.status == 200, await response.text()
        info = await response.json()
        assert info["exists"] is True and info["url"] == ""

    run_app(test)


def test_the_page_listens_to_every_download_event_the_server_sends(comfy):
    """The sidebar's cards and queue follow jobs over the websocket: an event name the page does not listen to
    leaves them at "Queued" (ComfyUI's frontend only warns "Unknown message type")."""
    from nodes.routes import HubRoutes

    jobs, events = JobManager(max_workers=1), Events()
    HubRoutes(jobs, events)

    def work(progress: Callable[[int, int], None], cancel: threading.Event) -> str:
        progress(5, 10)
        return str(Path(comfy.get_folder_paths("loras")[0]) / "x.safetensors")

    jobs.wait(jobs.submit("x", work, kind="", ref="someone/styles/x.safetensors").id, timeout=10)
    jobs.shutdown()
    page = (Path(__file__).resolve().parents[1] / "web" / "hubloader.js").read_text()
    sent = {name for name in events.names() if name.startswith("hubloader.download.")}
    assert sent == {"hubloader.download.state", "hubloader.download.progress"}
    assert [name for name in sent if f'"{name}"' not in page] == []


def test_source_entry_names_a_civitai_file_as_it_will_be_placed_before_any_download(comfy, hub_env):
    model_id, version_id = hub_env.add_civitai_model("Entry Ink", trained_words=["entryink"])
    source = f"civitai:{model_id}@{version_id}"
    loras = Path(comfy.get_folder_paths("loras")[0])

    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        response = await client.get("/hubloader/source", params={"kind": "loras", "source": source})
        assert response.status == 200, await response.text()
        body = await response.json()
        entry = body["model"]
        assert body["exists"] is False and not any(loras.rglob("*.safetensors"))  # nothing downloaded
        assert entry["url"] == f"{hub_env.civitai_url}/api/download/models/{version_id}"
        assert entry["directory"] == "loras" and entry["hash_type"] == "SHA256" and len(entry["hash"]) == 64
        plain = Path(entry["name"])
        assert plain.suffix == ".safetensors" and plain.parent == Path(".")

        (loras / plain).write_bytes(safetensors_bytes(kohya_lora(), seed=5))  # another file already has that name
        apart = await (await client.get("/hubloader/source", params={"kind": "loras", "source": source})).json()
        assert apart["model"]["name"] == f"{plain.stem}-{version_id}{plain.suffix}"

        job = await client.post("/hubloader/downloads", json={"ref": source, "kind": "loras"})
        done = await wait_job(client, (await job.json())["id"])
        assert done["state"] == DONE, done["error"]
        assert done["filename"] == apart["model"]["name"]  # the name written before is the name it got
        again = await (await client.get("/hubloader/source", params={"kind": "loras", "source": source})).json()
        assert again == {"model": apart["model"], "exists": True}
        assert hashlib.sha256((loras / done["filename"]).read_bytes()).hexdigest() == entry["hash"]

    run_app(test)


@pytest.mark.hf
def test_source_entry_names_a_huggingface_file_apart_when_its_name_is_taken(comfy, hub_env):
    data = safetensors_bytes(kohya_lora(), seed=81)
    hub_env.add_hf_repo("someone/styles", files={"model.safetensors": data})
    loras = Path(comfy.get_folder_paths("loras")[0])
    params = {"kind": "loras", "source": "someone/styles/model.safetensors"}

    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        entry = (await (await client.get("/hubloader/source", params=params)).json())["model"]
        assert entry["name"] == "model.safetensors" and entry["directory"] == "loras"
        assert entry["url"].endswith("/someone/styles/resolve/main/model.safetensors")
        assert entry["hash"] == hashlib.sha256(data).hexdigest() and entry["hash_type"] == "SHA256"
        assert not (loras / "model.safetensors").exists()

        (loras / "model.safetensors").write_bytes(safetensors_bytes(kohya_lora(), seed=82))
        apart = (await (await client.get("/hubloader/source", params=params)).json())["model"]
        assert apart["name"] == os.path.join("someone__styles", "model.safetensors")

        whole = await client.get("/hubloader/source", params={"kind": "loras", "source": "someone/styles"})
        assert whole.status == 400 and "whole repository" in (await whole.json())["error"]

    run_app(test)


def test_source_entry_is_refused_to_the_network_and_checks_its_input(comfy):
    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        params = {"kind": "loras", "source": "civitai:1@2"}
        forwarded = await client.get("/hubloader/source", params=params, headers={"X-Forwarded-For": "203.0.113.9"})
        assert forwarded.status == 403
        for bad, needle in (
            ({"kind": "../../etc", "source": "civitai:1@2"}, "not a ComfyUI model folder"),
            ({"kind": "loras", "source": "http://evil.example/x.safetensors"}, "neither a CivitAI nor a HuggingFace"),
        ):
            response = await client.get("/hubloader/source", params=bad)
            assert response.status == 400 and needle in (await response.json())["error"]

    run_app(test)


def test_the_page_registers_the_verify_setting_and_shows_a_stopped_prompt():
    """nodes/verify.py reads ``Hubloader.VerifyModelsBeforePrompt`` and sends ``hubloader.verify_failed``: the
    setting must exist in ComfyUI's dialog (off by default) and the event must reach the user."""
    from nodes import verify

    page = (Path(__file__).resolve().parents[1] / "web" / "hubloader.js").read_text()
    setting = next(line for line in page.splitlines() if f'id: "{verify.COMFY_SETTING}"' in line)
    assert "defaultValue: false" in setting
    assert f'api.addEventListener("{verify.EVENT}"' in page
