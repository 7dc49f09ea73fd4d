"""The fake hub's plain file route, its fault switches, counters and admin routes, over real HTTP."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.fakehub import FakeHub
from tests.fakehub.storage import GeneratedBlob

ROOT = Path(__file__).resolve().parents[1]


def test_bytes_file_get_and_head(fakehub: FakeHub):
    url = fakehub.add_file("/models/a.bin", b"hello world")
    head = requests.head(url)
    assert head.status_code == 200
    assert head.headers["Content-Length"] == "11"
    assert head.headers["Accept-Ranges"] == "bytes"
    assert head.headers["ETag"].startswith('"')
    assert head.content == b""
    got = requests.get(url)
    assert got.content == b"hello world"
    assert got.headers["ETag"] == head.headers["ETag"]


def test_generated_file_is_deterministic_and_hashed_lazily(fakehub: FakeHub):
    url = fakehub.add_file("big.bin", size=3 * 1024 * 1024 + 17, seed="s")
    blob = fakehub.blob(url)
    assert blob._hashes is None  # nothing hashed until asked
    body = requests.get(url).content
    assert len(body) == 3 * 1024 * 1024 + 17
    assert hashlib.sha256(body).hexdigest() == blob.sha256
    assert GeneratedBlob(len(body), "s").read() == body
    assert GeneratedBlob(len(body), "other").read(0, 4096) != body[:4096]


def test_range_requests(fakehub: FakeHub):
    url = fakehub.add_file("r.bin", size=100_000)
    full = requests.get(url).content
    part = requests.get(url, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == "bytes 1000-1999/100000"
    assert part.content == full[1000:2000]
    tail = requests.get(url, headers={"Range": "bytes=99000-"})
    assert tail.status_code == 206 and tail.content == full[99000:]
    suffix = requests.get(url, headers={"Range": "bytes=-10"})
    assert suffix.status_code == 206 and suffix.content == full[-10:]
    beyond = requests.get(url, headers={"Range": "bytes=100000-"})
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == "bytes */100000"


def test_if_range(fakehub: FakeHub):
    url = fakehub.add_file("ir.bin", size=5000)
    etag = requests.head(url).headers["ETag"]
    same = requests.get(url, headers={"Range": "bytes=10-", "If-Range": etag})
    assert same.status_code == 206 and len(same.content) == 4990
    changed = requests.get(url, headers={"Range": "bytes=10-", "If-Range": '"something-else"'})
    assert changed.status_code == 200 and len(changed.content) == 5000


def test_unknown_path_is_404(fakehub: FakeHub):
    assert requests.get(fakehub.cdn_url + "/missing.bin").status_code == 404


def test_redirect_route_crosses_hosts(fakehub: FakeHub):
    target = fakehub.add_file("t.bin", b"payload")
    url = fakehub.add_redirect("/go", target, host="hf")
    assert url.startswith(fakehub.hf_url)
    first = requests.get(url, allow_redirects=False)
    assert first.status_code == 302 and first.headers["Location"] == target
    assert requests.get(url).content == b"payload"


def test_counters_and_request_log(fakehub: FakeHub):
    url = fakehub.add_file("c.bin", size=10_000)
    requests.get(url)
    requests.get(url, headers={"Range": "bytes=0-99", "User-Agent": "probe/1"})
    assert fakehub.bytes_sent["/c.bin"] == 10_100
    assert fakehub.bytes_sent.total() == 10_100
    seen = [r for r in fakehub.requests if r.path == "/c.bin"]
    assert [r.method for r in seen] == ["GET", "GET"]
    assert seen[1].headers["User-Agent"] == "probe/1"
    assert seen[1].host == "cdn"
    fakehub.reset()
    assert fakehub.bytes_sent.total() == 0 and len(fakehub.requests) == 0
    assert requests.get(url).status_code == 404  # reset also forgets added files


def test_drop_after_bytes_and_resume(fakehub: FakeHub):
    url = fakehub.add_file("d.bin", size=200_000)
    expected = fakehub.blob(url).read()
    fakehub.faults.drop_after_bytes = 50_000
    fakehub.faults.drop_count = 1
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(url).content  # noqa: B018
    resumed = requests.get(url, headers={"Range": "bytes=50000-"})
    assert resumed.status_code == 206
    assert resumed.content == expected[50_000:]


def test_drop_every_response_without_count(fakehub: FakeHub):
    url = fakehub.add_file("d2.bin", size=20_000)
    fakehub.faults.drop_after_bytes = 100
    for _ in range(2):
        with requests.get(url, stream=True) as response:
            assert len(response.raw.read(20_000)) == 100


def test_wrong_bytes(fakehub: FakeHub):
    url = fakehub.add_file("w.bin", size=100_000)
    good = requests.get(url).content
    fakehub.faults.wrong_bytes = 70_000
    bad = requests.get(url).content
    assert len(bad) == len(good)
    diff = [i for i in range(len(good)) if good[i] != bad[i]]
    assert diff == list(range(70_000, 70_016))
    part = requests.get(url, headers={"Range": "bytes=69990-70009"}).content
    assert part[:10] == good[69_990:70_000] and part[10:] != good[70_000:70_010]


def test_ignore_range(fakehub: FakeHub):
    url = fakehub.add_file("ign.bin", size=5000)
    fakehub.faults.ignore_range = True
    response = requests.get(url, headers={"Range": "bytes=100-"})
    assert response.status_code == 200
    assert "Content-Range" not in response.headers
    assert len(response.content) == 5000


def test_require_token(fakehub: FakeHub):
    url = fakehub.add_file("tok.bin", b"secret bytes")
    fakehub.faults.require_token = "tk_good"
    assert requests.get(url).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer tk_bad"}).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer tk_good"}).content == b"secret bytes"
    assert requests.get(url, params={"token": "tk_good"}).content == b"secret bytes"


def test_rate_limit_then_recover(fakehub: FakeHub):
    url = fakehub.add_file("rl.bin", b"x")
    fakehub.faults.rate_limit = 2
    fakehub.faults.retry_after = 7
    for _ in range(2):
        limited = requests.get(url)
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "7"
    assert requests.get(url).status_code == 200


def test_server_errors_then_recover(fakehub: FakeHub):
    url = fakehub.add_file("se.bin", b"x")
    fakehub.faults.server_errors = 1
    assert requests.get(url).status_code == 503
    assert requests.get(url).status_code == 200


def test_path_prefix_limits_request_faults(fakehub: FakeHub):
    hit = fakehub.add_file("/api/x", b"a")
    spared = fakehub.add_file("/files/y", b"b")
    fakehub.faults.update(rate_limit=5, path_prefix="/api/")
    assert requests.get(spared).status_code == 200
    assert requests.get(hit).status_code == 429


def test_html_login_switch_and_login_required_file(fakehub: FakeHub):
    url = fakehub.add_file("h.bin", b"model")
    fakehub.faults.html_login = True
    page = requests.get(url)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert b"<form" in page.content
    fakehub.faults.html_login = False
    walled = fakehub.add_file("walled.bin", b"model", login_required=True)
    assert requests.get(walled).headers["Content-Type"].startswith("text/html")
    assert requests.get(walled, headers={"Authorization": "Bearer any"}).content == b"model"


def test_unknown_fault_name_is_refused(fakehub: FakeHub):
    with pytest.raises(KeyError, match="unknown fault"):
        fakehub.faults.update(bandwith_total=1)


def test_latency_and_bandwidth_are_enforced(fakehub: FakeHub):
    # Lower bounds only: the server sleeps at least this long, so these cannot flake on a slow machine.
    url = fakehub.add_file("slow.bin", size=60_000)
    fakehub.faults.latency = 0.2
    started = time.monotonic()
    requests.get(url, headers={"Range": "bytes=0-0"})
    assert time.monotonic() - started >= 0.2
    fakehub.faults.latency = 0.0
    fakehub.faults.bandwidth_per_connection = 100_000
    started = time.monotonic()
    assert len(requests.get(url).content) == 60_000
    assert time.monotonic() - started >= 0.5
    fakehub.faults.bandwidth_per_connection = None
    fakehub.faults.bandwidth_total = 100_000
    started = time.monotonic()
    assert len(requests.get(url).content) == 60_000
    assert time.monotonic() - started >= 0.5


def test_admin_routes(fakehub: FakeHub):
    admin = fakehub.civitai_url + "/_fake"
    assert requests.get(admin + "/").json()["cdn_url"] == fakehub.cdn_url
    url = requests.post(admin + "/files", json={"path": "/adm.bin", "size": 1234}).json()["url"]
    assert len(requests.get(url).content) == 1234
    assert requests.post(admin + "/faults", json={"rate_limit": 1}).json()["rate_limit"] == 1
    assert fakehub.faults.rate_limit == 1
    assert requests.get(url).status_code == 429
    assert requests.post(admin + "/faults", json={"nope": 1}).status_code == 400
    counters = requests.get(admin + "/counters").json()
    assert counters["bytes_sent"]["/adm.bin"] == 1234
    assert any(r["path"] == "/adm.bin" for r in requests.get(admin + "/requests").json())
    requests.post(admin + "/reset")
    assert fakehub.faults.rate_limit == 0 and fakehub.bytes_sent.total() == 0


def test_context_manager_gives_separate_ports():
    with FakeHub() as hub:
        ports = {hub.hf_url, hub.civitai_url, hub.cdn_url}
        assert len(ports) == 3
        assert requests.get(hub.hf_url + "/_fake/").status_code == 200
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(hub.hf_url + "/_fake/", timeout=5)


def test_standalone_process_prints_urls():
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakehub", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline().strip()  # type: ignore[union-attr]
        assert first.startswith("HF_ENDPOINT=http://127.0.0.1:")
        endpoint = first.split("=", 1)[1]
        assert requests.get(endpoint + "/_fake/", timeout=10).json()["hf_url"] == endpoint
    finally:
        process.terminate()
        process.wait(10)


def test_seed_demo_catalog_survives_reset():
    with FakeHub() as hub:
        hub.seed_demo = True
        hub.reset()
        models = requests.get(hub.hf_url + "/api/models", params={"search": "demo/"}).json()
        assert {m["id"] for m in models} >= {"demo/sdxl-pixel-lora", "demo/sd15-checkpoint"}
        assert requests.head(hub.cdn_url + "/files/big-1g.bin").headers["Content-Length"] == str(1 << 30)
        hub.reset()
        search = requests.get(hub.civitai_url + "/api/v1/models", params={"query": "pixel art"}).json()
        assert [m["name"] for m in search["items"]] == ["Pixel Art XL"]


def test_every_small_demo_model_downloads_verified_on_the_first_try(hub_env, tmp_path):
    """The Quick start's demo catalogue works on the first click: each HF file and each CivitAI version serves the
    bytes whose SHA256 it publishes (the 1 GiB speed-test file aside)."""
    from hubloader import CivitAIService, HuggingFaceHubService
    from tests.fakehub.demo import seed_demo

    seed_demo(hub_env)
    hf = HuggingFaceHubService()
    for repo in ("demo/sdxl-pixel-lora", "demo/sd15-checkpoint"):
        assert hf.download_model(repo, cache_dir=tmp_path / "hf").is_dir()
    civitai = CivitAIService()
    items = requests.get(hub_env.civitai_url + "/api/v1/models", timeout=10).json()["items"]
    assert len(items) == 3
    for item in items:
        version = item["modelVersions"][0]["id"]
        result = civitai.download_model(f"civitai:{item['id']}@{version}", download_dir=tmp_path / str(item["id"]))
        assert result.path.is_file() and result.sha256
