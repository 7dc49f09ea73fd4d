"""HuggingFace downloads through the site's shared cache (hubloader.sharedcache.cache): a folder standing in for NFS,
and an s3:// bucket on moto's standalone server. Two "machines" are two HF caches and two HUBLOADER_HOMEs
on this one; the fake hub's byte counters say how often the Hub's CDN sent each LFS file.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hubloader.core import settings as config
from hubloader.sharedcache.cache import open_shared_cache
from hubloader.sources.huggingface import HuggingFaceHubService
from tests.fakehub import FakeHub
from tests.fakehub.modelfiles import safetensors_bytes
from tests.test_fleet import cache_url, moto_endpoint, s3_env  # noqa: F401  (fixtures, used by name)

pytestmark = pytest.mark.hf

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_FleetTestToken0123456789abcdef"
MiB = 1024 * 1024


def _weights(seed: int, rows: int = 1024) -> bytes:
    """A real safetensors file (the engine sniffs model files) of about ``rows * 3`` KiB."""
    return safetensors_bytes({"weight": ("F16", (rows, 1536))}, seed=seed)


def _hf_file(hub: FakeHub, repo_id: str, path: str):
    repo = hub.hf.repos[repo_id]
    return repo.commits[repo.branches["main"]].files[path]


def _origin_bytes(hub: FakeHub, repo_id: str, path: str) -> int:
    """Bytes of an LFS file the Hub's CDN sent, over all requests."""
    return hub.bytes_sent[f"/storage/hf-{_hf_file(hub, repo_id, path).blob.key}"]


def _machine(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Become machine ``name``: its own HUBLOADER_HOME (locks, settings); returns its own HF cache."""
    monkeypatch.setenv("HUBLOADER_HOME", str(tmp_path / name / "home"))
    return tmp_path / name / "hf-cache"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _diffusers_repo(hub: FakeHub, repo_id: str) -> dict[str, bytes]:
    files = {
        "model_index.json": json.dumps({"_class_name": "StableDiffusionXLPipeline"}).encode(),
        "unet/config.json": b'{"cross_attention_dim": 64}',
        "unet/diffusion_pytorch_model.safetensors": _weights(11, rows=512),
        "vae/diffusion_pytorch_model.safetensors": _weights(12, rows=256),
    }
    hub.add_hf_repo(repo_id, files, tags=["diffusers", "text-to-image"], library_name="diffusers")
    return files


# --- the service ------------------------------------------------------------------------------------


def test_one_file_is_sent_by_the_hub_once_for_two_machines(hub_env, cache_url: str, tmp_path, monkeypatch) -> None:  # noqa: F811
    data = _weights(1)
    hub_env.add_hf_repo("site/private-lora", {"README.md": b"# x\n", "lora.safetensors": data}, private=True)
    hub_env.valid_hf_tokens.add(TOKEN)
    hub_env.grant("site/private-lora", TOKEN)
    sha = hashlib.sha256(data).hexdigest()
    ref = "site/private-lora/lora.safetensors"

    first_cache = _machine(tmp_path, "m1", monkeypatch)
    first = HuggingFaceHubService(token=TOKEN).download_model(ref, cache_dir=first_cache, shared_cache=cache_url)
    assert _origin_bytes(hub_env, "site/private-lora", "lora.safetensors") == len(data)

    second_cache = _machine(tmp_path, "m2", monkeypatch)
    second = HuggingFaceHubService(token=TOKEN).download_model(ref, cache_dir=second_cache, shared_cache=cache_url)

    assert _origin_bytes(hub_env, "site/private-lora", "lora.safetensors") == len(data)  # the cache served m2
    for path, cache in ((first, first_cache), (second, second_cache)):
        assert path.is_relative_to(cache) and path.resolve().name == sha  # blobs/<sha256>, in each machine's cache
        assert _sha256(path) == sha
        assert not [p.name for p in path.resolve().parent.iterdir() if p.name != sha]  # no .part left behind
    shared = open_shared_cache(cache_url)
    record = shared.store.read_record(sha)
    assert record is not None and record["size"] == len(data)
    assert record["file_name"] == "lora.safetensors" and record["source"] == "huggingface"
    commit = hub_env.hf.repos["site/private-lora"].branches["main"]
    assert record["url"] == f"{hub_env.hf_url}/site/private-lora/resolve/{commit}/lora.safetensors"
    assert TOKEN not in json.dumps(record)
    assert shared.store.lease_read(sha) is None


def test_a_repo_sends_each_lfs_file_once_for_two_machines(hub_env, cache_url: str, tmp_path, monkeypatch) -> None:  # noqa: F811
    files = _diffusers_repo(hub_env, "site/tiny-pipe")
    lfs = [p for p in files if p.endswith(".safetensors")]

    snapshots = []
    for name in ("m1", "m2"):
        cache = _machine(tmp_path, name, monkeypatch)
        snapshots.append(
            HuggingFaceHubService().download_model("site/tiny-pipe", cache_dir=cache, shared_cache=cache_url)
        )

    shared = open_shared_cache(cache_url)
    for path in lfs:  # small LFS files too: with a site cache every file whose SHA256 is known goes through it
        assert _origin_bytes(hub_env, "site/tiny-pipe", path) == len(files[path])
        assert shared.contains(hashlib.sha256(files[path]).hexdigest())
    for snapshot in snapshots:
        assert {p: (snapshot / p).read_bytes() for p in files} == files
    # Git-stored files have no SHA256 up front: each machine gets them from the Hub, as before.
    sent = sum(n for p, n in hub_env.bytes_sent.items() if p.endswith("/unet/config.json"))
    assert sent == 2 * len(files["unet/config.json"])


def test_the_shared_cache_setting_is_used_without_the_environment(hub_env, tmp_path, monkeypatch) -> None:
    data = _weights(2)
    hub_env.add_hf_repo("site/setting-lora", {"lora.safetensors": data})
    share = tmp_path / "share"
    share.mkdir()
    assert "HUBLOADER_SHARED_CACHE" not in os.environ

    paths = []
    for name in ("m1", "m2"):
        cache = _machine(tmp_path, name, monkeypatch)
        config.save_settings({"shared_cache": str(share)})  # each machine's own settings file
        paths.append(HuggingFaceHubService(cache_dir=cache).download_model("site/setting-lora/lora.safetensors"))

    assert _origin_bytes(hub_env, "site/setting-lora", "lora.safetensors") == len(data)
    assert [p.read_bytes() for p in paths] == [data, data]
    assert open_shared_cache(str(share)).contains(hashlib.sha256(data).hexdigest())


# --- the command line -------------------------------------------------------------------------------


def _get(*args: str, machine: Path) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        HUBLOADER_HOME=str(machine / "home"),
        HF_HOME=str(machine / "hf"),
        HF_HUB_CACHE=str(machine / "hf" / "hub"),
    )
    return subprocess.run(
        [sys.executable, "-m", "hubloader", "get", *args, "--json"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_get_on_two_machines_asks_the_hub_once(hub_env, cache_url: str, tmp_path) -> None:  # noqa: F811
    lora = _weights(3)
    hub_env.add_hf_repo("site/cli-lora", {"README.md": b"# x\n", "lora.safetensors": lora}, tags=["lora"])
    files = _diffusers_repo(hub_env, "site/cli-pipe")

    for name in ("m1", "m2"):
        machine = tmp_path / name
        models = machine / "models"
        one = _get("site/cli-lora/lora.safetensors", "--models-dir", str(models), "--shared-cache", cache_url, machine=machine)  # fmt: skip
        assert one.returncode == 0, one.stderr
        placed = Path(json.loads(one.stdout.splitlines()[0])["path"])
        assert placed.is_relative_to(models) and placed.read_bytes() == lora
        repo = _get("site/cli-pipe", "--models-dir", str(models), "--shared-cache", cache_url, machine=machine)
        assert repo.returncode == 0, repo.stderr
        snapshot = Path(json.loads(repo.stdout.splitlines()[0])["path"])
        assert snapshot.is_relative_to(machine / "hf" / "hub")
        assert (snapshot / "unet/diffusion_pytorch_model.safetensors").read_bytes() == files[
            "unet/diffusion_pytorch_model.safetensors"
        ]

    assert _origin_bytes(hub_env, "site/cli-lora", "lora.safetensors") == len(lora)
    for path in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"):
        assert _origin_bytes(hub_env, "site/cli-pipe", path) == len(files[path])
    assert open_shared_cache(cache_url).contains(hashlib.sha256(lora).hexdigest())
