"""SECURITY.md as an attacker sees it: ComfyUI's routes reached from the network over real HTTP, a workflow naming
an "internal" host, tokens pasted into URLs."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hubloader.core import settings as config
from hubloader.faces.jobs import JobManager
from tests.comfy_stub import folder_paths as stub_folder_paths
from tests.test_comfyui_routes import Events, wait_job
from tests.workflow_samples import node, ui_workflow

BODY_MARKER = "internal-secret-body"


#: Where "the network" connects from: another loopback address. The routes count only 127.0.0.1 and ::1 as this
#: machine's browser, so a real connection from 127.0.0.2 is a network client, and no test traffic leaves loopback.
NETWORK = "127.0.0.2"


@pytest.fixture
def comfy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    stub_folder_paths.setup(tmp_path / "comfy")
    monkeypatch.setitem(sys.modules, "folder_paths", stub_folder_paths)
    return stub_folder_paths


class Internal(ThreadingHTTPServer):
    """An "internal" service on another loopback port: counts every request and answers with a body worth stealing."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.seen.append(self.path)
                body = BODY_MARKER.encode()
                self.send_response(500)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_HEAD = do_GET

            def log_message(self, *args: Any) -> None:
                return None

        super().__init__(("127.0.0.1", 0), Handler)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"


@pytest.fixture
def internal() -> Iterator[Internal]:
    server = Internal()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_app(test: Callable[[TestClient, Events, JobManager], Awaitable[None]], client_ip: str = "127.0.0.1") -> None:
    """The real route stack served on 127.0.0.1; the test client connects to it from ``client_ip``."""
    from nodes.routes import HubRoutes

    async def main() -> None:
        jobs, events = JobManager(max_workers=2), Events()
        routes = web.RouteTableDef()
        HubRoutes(jobs, events).add_to(routes)
        app = web.Application()
        app.add_routes(routes)
        connector = aiohttp.TCPConnector(local_addr=(client_ip, 0))
        async with TestClient(TestServer(app, host="127.0.0.1"), connector=connector) as client:
            try:
                await test(client, events, jobs)
            finally:
                jobs.shutdown()

    asyncio.run(main())


def _attack_workflow(internal: Internal) -> dict[str, Any]:
    sha = hashlib.sha256(b"whatever").hexdigest()
    models = [
        {"name": "evil.ckpt", "url": internal.url("evil.ckpt"), "directory": "checkpoints", "hash": sha,
         "hash_type": "SHA256"},
        {"name": "admin.safetensors", "url": internal.url("admin.safetensors"), "directory": "loras", "hash": sha,
         "hash_type": "SHA256"},
    ]  # fmt: skip
    nodes = [
        node(1, "CheckpointLoaderSimple", ["evil.ckpt"]),
        node(2, "LoraLoader", ["admin.safetensors", 1, 1]),
    ]
    return ui_workflow(nodes, models=models)


async def _fetch_and_wait(client: TestClient, body: dict[str, Any]) -> tuple[int, dict[str, Any], list[dict]]:
    response = await client.post("/hubloader/missing/fetch", json=body)
    answer = await response.json()
    finished = [await wait_job(client, job["id"]) for job in answer.get("downloads", [])]
    return response.status, answer, finished


def test_a_network_client_cannot_make_comfyui_fetch_from_an_internal_host(comfy, hub_env, internal):
    workflow = _attack_workflow(internal)

    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        for body in ({"workflow": workflow}, {"workflow": workflow, "confirm": True}, {"workflow": workflow,
                                                                                      "confirmed": True}):  # fmt: skip
            status, answer, finished = await _fetch_and_wait(client, body)
            if "workflow" in body and len(body) > 1:
                assert status == 403, answer
                assert "from the network cannot confirm" in answer["error"]
            shown = str(answer) + str(finished) + str(events)
            assert BODY_MARKER not in shown
            assert all(job["state"] == "failed" for job in finished)
        assert internal.seen == []  # not one request reached the internal host
        for kind in ("checkpoints", "loras"):
            assert not any(Path(comfy.get_folder_paths(kind)[0]).iterdir())

    run_app(test, client_ip=NETWORK)


def test_a_local_client_loading_a_workflow_confirms_nothing(comfy, hub_env, internal):
    """Even on this machine, a workflow's own URL on an unknown host is never fetched without a confirmation the
    sidebar does not give on load."""
    workflow = _attack_workflow(internal)

    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        status, answer, finished = await _fetch_and_wait(client, {"workflow": workflow})
        assert status == 202
        assert BODY_MARKER not in str(answer) + str(finished) + str(events)
        assert all(job["state"] == "failed" for job in finished)
        refused = await client.post("/hubloader/missing/fetch", json={"workflow": workflow, "confirm": True})
        assert refused.status == 400 and "cannot confirm" in (await refused.json())["error"]
        assert internal.seen == []

    run_app(test)


@pytest.mark.parametrize(
    "change",
    [
        {"shared_cache": "/tmp/attacker-share"},
        {"hf_endpoint": "http://attacker.example"},
        {"civitai_endpoint": "http://attacker.example"},
        {"allow_pickle": True},
        {"allowed_hosts": "attacker.example"},
        {"cache_limit_gb": 0.001},  # the limit an explicit cleanup deletes down to
        {"models_dir": "/tmp/attacker-models"},
        {"nsfw": True, "shared_cache": ""},
    ],
)
def test_a_network_client_cannot_change_where_bytes_come_from(comfy, change):
    before = config.load_settings()

    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        response = await client.post("/hubloader/settings", json=change)
        answer = await response.json()
        assert response.status == 403, answer
        assert "only from this machine" in answer["error"] and "\n" not in answer["error"]
        assert config.load_settings() == before
        spoofed = await client.post("/hubloader/settings", json=change, headers={"X-Forwarded-For": "127.0.0.1"})
        assert spoofed.status == 403

    run_app(test, client_ip=NETWORK)


def test_a_network_client_may_still_change_the_harmless_settings(comfy):
    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        response = await client.post("/hubloader/settings", json={"nsfw": True, "max_connections": 4})
        assert response.status == 200, await response.text()
        assert config.load_settings()["nsfw"] is True

    run_app(test, client_ip=NETWORK)


def test_a_proxied_local_client_is_not_local(comfy, tmp_path):
    """Behind a reverse proxy every peer is loopback: a forwarded request is treated as from the network."""

    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        share = tmp_path / "share"
        share.mkdir()
        proxied = await client.post(
            "/hubloader/settings", json={"shared_cache": str(share)}, headers={"Forwarded": "for=203.0.113.9"}
        )
        assert proxied.status == 403
        direct = await client.post("/hubloader/settings", json={"shared_cache": str(share)})
        assert direct.status == 200 and config.load_settings()["shared_cache"] == str(share)

    run_app(test)


def test_a_pasted_civitai_token_is_redacted_in_jobs_and_events(comfy, hub_env):
    model_id, version_id = hub_env.add_civitai_model("Ink Style", trained_words=["inkstyle"])
    token = "c1v1t41s3cr3tt0k3n"
    url = f"{hub_env.civitai_url}/api/download/models/{version_id}?type=Model&token={token}"

    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        response = await client.post("/hubloader/downloads", json={"ref": url, "kind": "loras"})
        assert response.status == 202, await response.text()
        job = await wait_job(client, (await response.json())["id"])
        listed = await (await client.get("/hubloader/downloads")).text()
        assert token not in listed and token not in str(events) and token not in str(job)
        assert "token=***" in job["label"]

    run_app(test)


@pytest.mark.parametrize("scheme, sent", [("http", False), ("https", True)])
def test_a_token_goes_to_a_network_service_only_over_https(monkeypatch, tmp_path, scheme, sent):
    """A lockfile's http://civitai… entry (or an http endpoint) never carries the token; https does. Loopback
    endpoints (tests, a mirror on this machine) are the one exception, so this is decided on a network name."""
    from hubloader.gate.policy import token_for
    from hubloader.gate.request import FileRequest

    monkeypatch.setenv("CIVITAI_ENDPOINT", f"{scheme}://civitai.example")
    config.save_settings({"civitai_token": config.Secret("c1v1t41s3cr3tt0k3n")})
    url = f"{scheme}://civitai.example/api/download/models/7"
    request = FileRequest(url=url, folder=tmp_path, name="ink.safetensors", token_service="civitai")
    token = token_for(request, url)
    assert (token is not None and token.reveal() == "c1v1t41s3cr3tt0k3n") is sent


# --- a host outside the known ones, confirmed on this machine ---------------------------------------------------


def _foreign_workflow(hub, data: bytes) -> tuple[dict[str, Any], str]:
    """A workflow naming two files on a host nobody configured: one with its SHA256, one without."""
    hashed = hub.add_file("/files/hashed.safetensors", data)
    unhashed = hub.add_file("/files/unhashed.safetensors", data)
    models = [
        {"name": "hashed.safetensors", "url": hashed, "directory": "loras", "hash": hashlib.sha256(data).hexdigest(),
         "hash_type": "SHA256"},
        {"name": "unhashed.safetensors", "url": unhashed, "directory": "loras"},
    ]  # fmt: skip
    nodes = [node(1, "LoraLoader", ["hashed.safetensors", 1, 1]), node(2, "LoraLoader", ["unhashed.safetensors", 1, 1])]
    return ui_workflow(nodes, models=models), hashed


@pytest.fixture
def foreign(hub_env, monkeypatch: pytest.MonkeyPatch):
    """The fake hubs with their CDN *not* allowed: to the gate it is a host like any other."""
    monkeypatch.delenv("HUBLOADER_ALLOWED_HOSTS", raising=False)
    return hub_env


def _asked(hub, name: str) -> list:
    return [r for r in hub.requests if r.path == f"/files/{name}"]


def test_a_local_user_confirms_a_foreign_host_for_files_with_a_published_hash_only(comfy, foreign):
    from hubloader.gate.policy import host_key
    from tests.fakehub.modelfiles import safetensors_bytes

    data = safetensors_bytes({"lora_up.weight": ("F16", [4, 4])}, seed=11)
    workflow, url = _foreign_workflow(foreign, data)
    host = host_key(url)

    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        listed = await (await client.post("/hubloader/missing", json={"workflow": workflow})).json()
        assert sorted((q["name"], q["host"], q["confirmable"]) for q in listed["confirm"]) == [
            ("hashed.safetensors", host, True),
            ("unhashed.safetensors", host, False),
        ]
        assert _asked(foreign, "hashed.safetensors") == []  # loading a workflow asks nothing of the host

        status, answer, finished = await _fetch_and_wait(client, {"workflow": workflow, "confirm_hosts": [host]})
        assert status == 202, answer
        by_name = {job["label"]: job for job in finished}
        assert by_name["hashed.safetensors"]["state"] == "done", by_name
        assert by_name["unhashed.safetensors"]["state"] == "failed"
        assert "SHA256" in by_name["unhashed.safetensors"]["error"]
        assert _asked(foreign, "unhashed.safetensors") == []  # never asked for, whatever the confirmation

    run_app(test)
    loras = Path(comfy.get_folder_paths("loras")[0])
    assert (loras / "hashed.safetensors").read_bytes() == data
    assert not (loras / "unhashed.safetensors").exists()


def test_a_network_client_cannot_confirm_a_host(comfy, foreign):
    from hubloader.gate.policy import host_key
    from tests.fakehub.modelfiles import safetensors_bytes

    workflow, url = _foreign_workflow(foreign, safetensors_bytes({"w": ("F16", [2, 2])}, seed=12))

    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        for headers in ({}, {"X-Forwarded-For": "127.0.0.1"}):
            response = await client.post(
                "/hubloader/missing/fetch",
                json={"workflow": workflow, "confirm_hosts": [host_key(url)]},
                headers=headers,
            )
            assert response.status == 403 and "cannot confirm" in (await response.json())["error"]
        assert jobs.list() == []
        assert _asked(foreign, "hashed.safetensors") == []

    run_app(test, client_ip=NETWORK)


def test_another_sites_page_in_a_local_browser_cannot_confirm_a_host(comfy, foreign):
    """A page from elsewhere can post to 127.0.0.1 as text/plain (no CORS preflight): its Origin gives it away."""
    import json

    from hubloader.gate.policy import host_key
    from tests.fakehub.modelfiles import safetensors_bytes

    workflow, url = _foreign_workflow(foreign, safetensors_bytes({"w": ("F16", [2, 2])}, seed=14))
    body = json.dumps({"workflow": workflow, "confirm_hosts": [host_key(url)]})

    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        headers = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
        response = await client.post("/hubloader/missing/fetch", data=body, headers=headers)
        assert response.status == 403 and "cannot confirm" in (await response.json())["error"]
        assert jobs.list() == [] and _asked(foreign, "hashed.safetensors") == []
        own = f"http://{client.server.host}:{client.server.port}"
        response = await client.post("/hubloader/missing/fetch", data=body, headers={"Origin": own})
        assert response.status == 202, await response.text()

    run_app(test)


@pytest.mark.parametrize("hosts", ["127.0.0.1", [5], ["a b"], [""]])
def test_confirm_hosts_must_be_a_list_of_host_names(comfy, foreign, hosts):
    from tests.fakehub.modelfiles import safetensors_bytes

    workflow, _ = _foreign_workflow(foreign, safetensors_bytes({"w": ("F16", [2, 2])}, seed=13))

    async def test(client: TestClient, events: Events, jobs: JobManager) -> None:
        response = await client.post("/hubloader/missing/fetch", json={"workflow": workflow, "confirm_hosts": hosts})
        assert response.status == 400 and "confirm_hosts" in (await response.json())["error"]
        assert jobs.list() == []

    run_app(test)
