"""The shared cache (hubloader.sharedcache.cache) against a real S3-compatible server (moto's standalone server, on
loopback, in a subprocess) and a shared folder standing in for NFS: the same code path for both.

Downloads come from the loopback fake hub, whose byte counters say how often the origin was asked.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubloader.core.errors import NotFound
from hubloader.core.folders import standalone_folders
from hubloader.sharedcache.cache import (
    SharedCache,
    fetch_via_shared_cache,
    open_shared_cache,
    push_paths,
)
from hubloader.sharedcache.stores import SharedCacheUnavailable, object_key
from hubloader.workflows import Resolver, Status
from hubloader.workflows.lockfile import LockedModel, Lockfile, pull_lockfile, resolve_lockfile

pytest.importorskip("boto3")
MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[1]
S3_KEYS = {
    "AWS_ACCESS_KEY_ID": "fleet-test",
    "AWS_SECRET_ACCESS_KEY": "fleet-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


# --- servers ----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto server did not start")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's standalone S3 server (it honours If-None-Match / If-Match on PutObject) on a free port."""
    pytest.importorskip("moto.server")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in S3_KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return moto_endpoint


def _new_bucket() -> str:
    import boto3

    bucket = f"fleet-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(params=["dir", "s3"])
def cache_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh shared cache: a folder (as an NFS mount would be) or an s3:// bucket prefix on moto."""
    if request.param == "dir":
        share = tmp_path / "share"
        share.mkdir()
        return str(share)
    request.getfixturevalue("s3_env")
    return f"s3://{_new_bucket()}/site-a"


def _origin(url: str, expected_sha256: str):
    from hubloader.engine.download import download_file

    return lambda target: download_file(url, target, expected_sha256=expected_sha256)


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


# --- single process ---------------------------------------------------------------------------------


def test_second_worker_pulls_from_the_cache_not_the_origin(hub_env, cache_url: str, tmp_path: Path) -> None:
    url = hub_env.add_file("fleet/one.safetensors", size=3 * MiB + 17)
    sha = hub_env.blob(url).sha256
    cache = open_shared_cache(cache_url)

    first = cache.fetch(sha, tmp_path / "a" / "one.safetensors", _origin(url, sha), record={"url": url})
    second = cache.fetch(sha, tmp_path / "b" / "one.safetensors", _origin(url, sha))

    assert first.sha256 == second.sha256 == sha
    assert (tmp_path / "b" / "one.safetensors").read_bytes() == hub_env.blob(url).read()
    assert hub_env.bytes_sent[_path(url)] == 3 * MiB + 17  # one copy from the origin, whatever the backend
    assert second.url.endswith(object_key(sha))
    record = open_shared_cache(cache_url).store.read_record(sha)
    assert record is not None and record["size"] == 3 * MiB + 17 and record["url"] == url and record["first_fetched"]
    # Nothing half-done is left in the folders, and no lease stays behind.
    assert cache.store.lease_read(sha) is None
    assert not [p for p in (tmp_path / "b").iterdir() if p.name != "one.safetensors"]


def test_object_whose_bytes_do_not_match_its_key_is_quarantined_and_refetched(
    hub_env, cache_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = hub_env.add_file("fleet/bad.safetensors", size=2 * MiB)
    sha = hub_env.blob(url).sha256
    cache = open_shared_cache(cache_url)
    # Someone's broken copy published under the right name: same size, other bytes.
    liar = tmp_path / "liar.bin"
    liar.write_bytes(os.urandom(2 * MiB))
    cache.store.publish(sha, liar, {"sha256": sha, "size": 2 * MiB})

    with caplog.at_level(logging.WARNING, logger="hubloader.sharedcache.fetching"):
        result = cache.fetch(sha, tmp_path / "w" / "bad.safetensors", _origin(url, sha))

    assert result.sha256 == sha and (tmp_path / "w" / "bad.safetensors").read_bytes() == hub_env.blob(url).read()
    assert len(cache.problems) == 1 and "did not match its name" in cache.problems[0]
    assert "did not match its name" in caplog.text
    assert hub_env.bytes_sent[_path(url)] == 2 * MiB
    # The cache now holds the right bytes: the next worker copies them without asking the origin.
    cache.fetch(sha, tmp_path / "x" / "bad.safetensors", _origin(url, sha))
    assert hub_env.bytes_sent[_path(url)] == 2 * MiB and len(cache.problems) == 1


def test_leases_are_compare_and_swap(cache_url: str) -> None:
    store = open_shared_cache(cache_url).store
    sha = "ab" * 32
    token = store.lease_create(sha, {"holder": "one"})
    assert token is not None
    assert store.lease_create(sha, {"holder": "two"}) is None  # If-None-Match: * / the lock file exists
    body, seen = store.lease_read(sha)
    assert body["holder"] == "one" and seen == token
    renewed = store.lease_replace(sha, {"holder": "one"}, token)
    assert renewed is not None and renewed != token
    assert store.lease_replace(sha, {"holder": "late"}, token) is None  # a stale token loses
    store.lease_delete(sha, token)  # not ours any more: nothing happens
    assert store.lease_read(sha)[0]["holder"] == "one"
    store.lease_delete(sha, renewed)
    assert store.lease_read(sha) is None


def test_a_lease_nobody_renews_is_taken_over(hub_env, cache_url: str, tmp_path: Path) -> None:
    url = hub_env.add_file("fleet/orphan.safetensors", size=MiB)
    sha = hub_env.blob(url).sha256
    cache = open_shared_cache(cache_url, lease_s=1)
    # A fetcher that died right after its election: its lease is never renewed.
    cache.store.lease_create(sha, {"holder": "dead-host:1:x", "ttl_s": 1})
    events = []

    result = cache.fetch(sha, tmp_path / "w" / "orphan.safetensors", _origin(url, sha), progress=events.append)

    assert result.sha256 == sha
    assert "waiting" in [e.state for e in events]
    assert hub_env.bytes_sent[_path(url)] == MiB
    assert cache.store.lease_read(sha) is None


@pytest.fixture
def s3_cache(s3_env: str) -> SharedCache:
    return open_shared_cache(f"s3://{_new_bucket()}/site-a", lease_s=1)


def _stage(store, url: str, hub, chunks: range, *, wrong: bool = False) -> None:
    """Chunks of ``url``'s file as a fetcher that died would have staged them (``wrong``: other bytes,
    correctly named — a stager that read a ``.part`` being rewritten)."""
    blob, size = hub.blob(url), hub.blob(url).size
    step = store.chunk_size(size)
    sha = blob.sha256
    for index in chunks:
        data = blob.read(index * step, min(size, (index + 1) * step))
        store.stage_chunk(sha, size, index * step, os.urandom(len(data)) if wrong else data)


def test_s3_takeover_resumes_from_the_chunks_the_dead_fetcher_staged(hub_env, s3_cache, tmp_path: Path) -> None:
    url = hub_env.add_file("fleet/resume.safetensors", size=40 * MiB + 123)
    sha, store = hub_env.blob(url).sha256, s3_cache.store
    step = store.chunk_size(40 * MiB + 123)
    _stage(store, url, hub_env, range(3))  # the dead fetcher had finished three chunks
    store.lease_create(sha, {"holder": "dead-host:1:x", "ttl_s": 1})

    result = s3_cache.fetch(sha, tmp_path / "w" / "resume.safetensors", _origin(url, sha))

    assert result.sha256 == sha
    assert hub_env.bytes_sent[_path(url)] == 40 * MiB + 123 - 3 * step  # only what was not staged
    assert store.object_size(sha) == 40 * MiB + 123
    assert store.staged_chunks(sha) == []  # published: the staging area is cleared
    copied = tmp_path / "copy.safetensors"
    open_shared_cache(s3_cache.url).fetch(sha, copied, None)  # the published object is the whole file
    assert copied.read_bytes() == hub_env.blob(url).read()


def test_s3_staged_chunks_that_are_wrong_cost_a_refetch_never_a_bad_object(hub_env, s3_cache, tmp_path: Path) -> None:
    url = hub_env.add_file("fleet/wrong.safetensors", size=20 * MiB)
    sha, store = hub_env.blob(url).sha256, s3_cache.store
    _stage(store, url, hub_env, range(1), wrong=True)
    store.lease_create(sha, {"holder": "dead-host:1:x", "ttl_s": 1})

    result = s3_cache.fetch(sha, tmp_path / "w" / "wrong.safetensors", _origin(url, sha))

    assert result.sha256 == sha and (tmp_path / "w" / "wrong.safetensors").read_bytes() == hub_env.blob(url).read()
    assert any("were wrong; fetching it again" in line for line in s3_cache.problems)
    assert store.staged_chunks(sha) == []
    pulled = open_shared_cache(s3_cache.url).fetch(sha, tmp_path / "x" / "wrong.safetensors", None)
    assert pulled.sha256 == sha


def test_s3_staged_chunk_whose_bytes_do_not_match_its_name_is_dropped(hub_env, s3_cache, tmp_path: Path) -> None:
    url = hub_env.add_file("fleet/rot.safetensors", size=24 * MiB)
    sha, store = hub_env.blob(url).sha256, s3_cache.store
    _stage(store, url, hub_env, range(2))
    rotten = sorted(store.staged_chunks(sha), key=lambda c: c.start)[1]
    store.client.put_object(Bucket=store.bucket, Key=rotten.key, Body=os.urandom(rotten.end - rotten.start))
    store.lease_create(sha, {"holder": "dead-host:1:x", "ttl_s": 1})

    s3_cache.fetch(sha, tmp_path / "w" / "rot.safetensors", _origin(url, sha))

    assert hub_env.bytes_sent[_path(url)] == 24 * MiB - (rotten.end - rotten.start)  # chunk 0 was used
    assert store.staged_chunks(sha) == []


def test_s3_fetcher_stages_chunks_while_it_downloads(hub_env, s3_cache, tmp_path: Path) -> None:
    import threading

    hub_env.faults.bandwidth_total = 24 * MiB  # an origin slower than the site's store, as on most sites
    size = 72 * MiB
    url = hub_env.add_file("fleet/staged.safetensors", size=size)
    sha, store = hub_env.blob(url).sha256, s3_cache.store
    seen: list[int] = []
    worker = threading.Thread(target=s3_cache.fetch, args=(sha, tmp_path / "w" / "staged.st", _origin(url, sha)))
    worker.start()
    while worker.is_alive():
        seen.append(len(store.staged_chunks(sha)))
        time.sleep(0.1)
    worker.join()

    assert max(seen) >= 2, seen  # chunks reached the bucket before the download ended
    assert store.object_size(sha) == size and store.staged_chunks(sha) == []
    # (parallel connections may over-read a little where one stole the end of another's segment)
    assert size <= hub_env.bytes_sent[_path(url)] <= 1.01 * size


def test_resolve_lockfile_through_the_shared_cache(hub_env, cache_url: str, tmp_path: Path) -> None:
    files = {"a.safetensors": 1 * MiB, "b.safetensors": 2 * MiB + 5}
    models = []
    for name, size in files.items():
        url = hub_env.add_file(f"lock/{name}", size=size)
        models.append(LockedModel("loras", name, size, hub_env.blob(url).sha256, url=url))
    lock = Lockfile(models=models)

    for machine in ("m1", "m2", "m3"):
        resolver = Resolver(standalone_folders(tmp_path / machine), search=False, shared_cache=cache_url)
        report = resolve_lockfile(lock, resolver=resolver)
        assert [i.status for i in report.items] == [Status.FETCHED, Status.FETCHED]
        for model in models:
            assert (tmp_path / machine / "loras" / model.name).stat().st_size == model.size

    assert sum(hub_env.bytes_sent.values()) == sum(files.values())


def test_shared_cache_from_the_environment(hub_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    share = tmp_path / "share"
    share.mkdir()
    monkeypatch.setenv("HUBLOADER_SHARED_CACHE", str(share))
    url = hub_env.add_file("env/c.safetensors", size=MiB)
    sha = hub_env.blob(url).sha256
    fetch_via_shared_cache(sha, tmp_path / "a" / "c.safetensors", _origin(url, sha))
    assert (share / object_key(sha)).stat().st_size == MiB


def test_civitai_downloads_ask_the_origin_once_per_site(
    hub_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hubloader.sources.civitai import CivitAIService

    share = tmp_path / "share"
    share.mkdir()
    monkeypatch.setenv("HUBLOADER_SHARED_CACHE", str(share))
    model_id, version_id = hub_env.add_civitai_model("Fleet LoRA", type="LORA")
    first = CivitAIService().download_model(model_id, version_id, tmp_path / "m1")
    second = CivitAIService().download_model(model_id, version_id, tmp_path / "m2")

    assert first.sha256 == second.sha256 and second.path.read_bytes() == first.path.read_bytes()
    assert sum(hub_env.bytes_sent.values()) == first.size_bytes
    # Only the fetching worker asked CivitAI for a signed download URL.
    assert len([r for r in hub_env.requests if r.path.startswith("/api/download/")]) == 1
    assert json.loads((share / (object_key(first.sha256) + ".json")).read_text())["source"] == "civitai"


def test_push_then_pull_a_lockfile_without_the_origin(cache_url: str, tmp_path: Path) -> None:
    local = tmp_path / "mine" / "loras"
    local.mkdir(parents=True)
    (local / "x.safetensors").write_bytes(b"x" * 1000)
    (local / "notes.txt").write_text("not a model")
    cache = open_shared_cache(cache_url)

    pushed = push_paths(cache, [tmp_path / "mine"])
    assert [(p.name, new) for p, _, new in pushed] == [("x.safetensors", True)]
    assert push_paths(cache, [local / "x.safetensors"])[0][2] is False  # already there

    sha = pushed[0][1]
    missing = "cd" * 32
    lock = Lockfile(
        models=[
            LockedModel("loras", "x.safetensors", 1000, sha, url="https://example.invalid/x"),
            LockedModel("loras", "y.safetensors", 5, missing, url="https://example.invalid/y"),
        ]
    )
    report = pull_lockfile(lock, standalone_folders(tmp_path / "other"), cache=cache)

    assert report.items[0].status is Status.FETCHED
    assert (tmp_path / "other" / "loras" / "x.safetensors").read_bytes() == b"x" * 1000
    assert report.items[1].status is Status.FAILED and "not in the shared cache" in report.items[1].reason


def test_unreachable_store_falls_back_to_the_origin_or_fails(
    hub_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name, value in S3_KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    url = hub_env.add_file("down/d.safetensors", size=MiB)
    sha = hub_env.blob(url).sha256

    for broken in ("s3://fleet-nowhere/p", str(tmp_path / "not-mounted")):
        with caplog.at_level(logging.WARNING, logger="hubloader.sharedcache.fetching"):
            result = open_shared_cache(broken).fetch(sha, tmp_path / "w" / broken[-1] / "d.st", _origin(url, sha))
        assert result.sha256 == sha
        assert "shared cache not used" in caplog.text and "Downloading from the origin" in caplog.text
        caplog.clear()
        with pytest.raises(SharedCacheUnavailable) as failed:
            open_shared_cache(broken, fallback="fail").fetch(sha, tmp_path / "f" / "d.st", _origin(url, sha))
        assert "\n" not in str(failed.value)
        assert not (tmp_path / "f" / "d.st").exists()


def test_missing_credentials_is_one_clear_line(
    s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub_env
) -> None:
    bucket = _new_bucket()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    url = hub_env.add_file("creds/e.safetensors", size=1000)
    sha = hub_env.blob(url).sha256

    with pytest.raises(SharedCacheUnavailable) as failed:
        open_shared_cache(f"s3://{bucket}", fallback="fail").fetch(sha, tmp_path / "e.st", _origin(url, sha))
    assert str(failed.value).startswith(f"No credentials for s3://{bucket}.")
    assert "AWS_ACCESS_KEY_ID" in str(failed.value) and "\n" not in str(failed.value)
    # With the default policy the worker still gets its file, from the origin.
    assert open_shared_cache(f"s3://{bucket}").fetch(sha, tmp_path / "e.st", _origin(url, sha)).sha256 == sha


def test_pull_only_cache_never_asks_the_origin(hub_env, cache_url: str, tmp_path: Path) -> None:
    url = hub_env.add_file("pull/p.safetensors", size=1000)
    sha = hub_env.blob(url).sha256
    cache = SharedCache(open_shared_cache(cache_url).store, origin=False, lease_s=1)
    with pytest.raises(NotFound):
        cache.fetch(sha, tmp_path / "p.st", _origin(url, sha))
    assert hub_env.bytes_sent[_path(url)] == 0


# --- many processes ---------------------------------------------------------------------------------

WORKERS = 20


def _fleet_lockfile(hub, tmp_path: Path, big: int) -> tuple[Path, dict[str, int], str]:
    sizes = {"checkpoints/big.safetensors": big, "loras/a.safetensors": 3 * MiB, "vae/v.safetensors": 5 * MiB + 1}
    models, big_sha = [], ""
    for name, size in sizes.items():
        kind, file_name = name.split("/")
        url = hub.add_file(f"fleet-{uuid.uuid4().hex[:6]}/{file_name}", size=size)
        sha = hub.blob(url).sha256
        big_sha = big_sha or sha
        models.append(LockedModel(kind, file_name, size, sha, url=url))
    path = Lockfile(models=models).save(tmp_path / "site.lock.json")
    return path, sizes, big_sha


def _start_workers(lockfile: Path, tmp_path: Path, cache_url: str, n: int = WORKERS) -> list[subprocess.Popen]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(HUBLOADER_SHARED_CACHE_LEASE_S="2", PYTHONPATH=str(REPO))
    procs = []
    for i in range(n):
        env_i = dict(env, HUBLOADER_HOME=str(tmp_path / f"home{i}"))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.fleet_worker", str(lockfile), str(tmp_path / f"w{i}"), cache_url],
                cwd=REPO,
                env=env_i,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def _check_workers(procs: list[subprocess.Popen], tmp_path: Path, sizes: dict[str, int], skip: set[int]) -> None:
    from hubloader.engine.hashing import sha256_file

    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=120)
        if i in skip:
            continue
        assert proc.returncode == 0, f"worker {i}: {err[-2000:]}"
        lines = [json.loads(line) for line in out.splitlines()]
        assert [line["status"] for line in lines] == ["fetched"] * len(sizes), out
        for name, line in zip(sizes, lines, strict=True):
            assert sha256_file(tmp_path / f"w{i}" / name) == line["sha256"]


@pytest.mark.slow
def test_twenty_workers_fetch_each_file_once(hub_env, cache_url: str, tmp_path: Path) -> None:
    hub_env.faults.bandwidth_total = 64 * MiB  # bytes/s: transfers overlap, as on a real link
    lockfile, sizes, _ = _fleet_lockfile(hub_env, tmp_path, 64 * MiB)

    procs = _start_workers(lockfile, tmp_path, cache_url)
    _check_workers(procs, tmp_path, sizes, skip=set())

    one_copy = sum(sizes.values())
    assert sum(hub_env.bytes_sent.values()) <= 1.05 * one_copy


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_killing_the_lease_holder_mid_transfer(hub_env, cache_url: str, tmp_path: Path) -> None:
    """The worker that takes over resumes where the dead fetcher stopped: from its ``.part`` in the
    shared folder, or from the chunks of its ``.part`` it staged in the bucket."""
    # A bucket is nearer than the internet: staging keeps up with an origin slower than the store. moto, a single
    # Python process on this 2-core machine, takes 0.3 s or more a put, so the S3 leg's origin runs at half speed.
    hub_env.faults.bandwidth_total = (16 if cache_url.startswith("s3://") else 32) * MiB
    big = 256 * MiB
    lockfile, sizes, big_sha = _fleet_lockfile(hub_env, tmp_path, big)
    store = open_shared_cache(cache_url).store

    procs = _start_workers(lockfile, tmp_path, cache_url)
    by_pid = {p.pid: i for i, p in enumerate(procs)}
    deadline, victim = time.monotonic() + 60, None
    while victim is None and time.monotonic() < deadline:
        sent = max((n for p, n in hub_env.bytes_sent.items() if p.endswith("big.safetensors")), default=0)
        # Ask the store who holds the lease only once a third has been sent: each ask is a request to the store
        # the holder stages its chunks in, and 20 a second of them slowed the staging the test is about.
        lease = store.lease_read(big_sha) if sent > big // 3 else None
        if lease is not None and lease[0].get("pid") in by_pid:
            victim = by_pid[lease[0]["pid"]]
            os.kill(procs[victim].pid, signal.SIGKILL)
        time.sleep(0.05)
    assert victim is not None, "no worker held the lease mid-transfer"

    _check_workers(procs, tmp_path, sizes, skip={victim})
    assert procs[victim].returncode == -signal.SIGKILL
    assert sum(hub_env.bytes_sent.values()) <= 1.1 * sum(sizes.values())


def test_s3_staged_chunk_gone_before_it_is_read_is_none(hub_env, s3_cache) -> None:
    """A publisher may clear the staging area between a taker's listing and its read: the chunk is just gone."""
    url = hub_env.add_file("fleet/cleared.safetensors", size=20 * MiB)
    sha, store = hub_env.blob(url).sha256, s3_cache.store
    _stage(store, url, hub_env, range(2))
    kept, gone = sorted(store.staged_chunks(sha), key=lambda c: c.start)
    store.client.delete_object(Bucket=store.bucket, Key=gone.key)

    assert store.read_chunk(gone) is None
    assert store.read_chunk(kept) == hub_env.blob(url).read(kept.start, kept.end)
