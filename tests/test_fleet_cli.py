"""The fleet faces of the command line, run as subprocesses: resolve --shared-cache, cache push, cache pull."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from hubloader.sharedcache.stores import object_key
from hubloader.workflows.lockfile import LockedModel, Lockfile

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[1]


def _hubloader(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HUBLOADER_HOME=str(home), PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "hubloader", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_resolve_push_and_pull_through_a_shared_folder(hub_env, tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    url = hub_env.add_file("cli/fleet.safetensors", size=2 * MiB)
    sha = hub_env.blob(url).sha256
    lock = Lockfile(models=[LockedModel("loras", "fleet.safetensors", 2 * MiB, sha, url=url)]).save(
        tmp_path / "site.lock.json"
    )

    first = _hubloader(
        "resolve", str(lock), "--download", "--models-dir", str(tmp_path / "m1"), "--shared-cache", str(share),
        home=tmp_path / "h1",
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert (share / object_key(sha)).stat().st_size == 2 * MiB

    pulled = _hubloader("cache", "pull", str(lock), "--models-dir", str(tmp_path / "m2"), "--shared-cache", str(share), home=tmp_path / "h2")  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "m2" / "loras" / "fleet.safetensors").read_bytes() == hub_env.blob(url).read()
    assert sum(hub_env.bytes_sent.values()) == 2 * MiB  # the pull never asked the origin

    mine = tmp_path / "m3" / "checkpoints"
    mine.mkdir(parents=True)
    (mine / "own.safetensors").write_bytes(b"\0" * 4096)
    pushed = _hubloader("cache", "push", "--models-dir", str(tmp_path / "m3"), "--shared-cache", str(share), "--json", home=tmp_path / "h3")  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    record = json.loads(pushed.stdout.splitlines()[0])
    assert record["new"] is True and (share / object_key(record["sha256"])).stat().st_size == 4096


def test_pull_of_a_model_nobody_published_fails_with_one_line(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    lock = Lockfile(models=[LockedModel("loras", "x.safetensors", 5, "ef" * 32, url="https://example.invalid/x")])
    lock.save(tmp_path / "x.lock.json")
    result = _hubloader("cache", "pull", str(tmp_path / "x.lock.json"), "--models-dir", str(tmp_path / "m"), "--shared-cache", str(share), home=tmp_path / "h")  # fmt: skip
    assert result.returncode != 0
    assert "not in the shared cache" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_push_without_a_shared_cache_is_a_usage_error(tmp_path: Path) -> None:
    result = _hubloader("cache", "push", home=tmp_path / "h")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "HUBLOADER_SHARED_CACHE" in result.stderr


def test_push_follows_the_shared_cache_setting_as_get_does(tmp_path: Path) -> None:
    """`cache push` uses the shared_cache setting when no flag or variable names a cache (get already did)."""
    share = tmp_path / "share"
    share.mkdir()
    home = tmp_path / "h"
    home.mkdir()
    (home / "settings.json").write_text(json.dumps({"shared_cache": str(share)}))
    mine = tmp_path / "m" / "loras"
    mine.mkdir(parents=True)
    (mine / "own.safetensors").write_bytes(b"own model bytes" * 100)
    result = _hubloader("cache", "push", "--models-dir", str(tmp_path / "m"), home=home)
    assert result.returncode == 0, result.stderr
    assert (share / object_key(hashlib.sha256(b"own model bytes" * 100).hexdigest())).is_file()
