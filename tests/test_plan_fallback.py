"""Same bytes, other places: a plan whose pinned source is gone fetches the same SHA256 from elsewhere."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from hubloader.core.folders import standalone_folders
from hubloader.sharedcache.cache import open_shared_cache
from hubloader.workflows import Resolver, Status
from hubloader.workflows.lockfile import LockedModel, Lockfile
from hubloader.workflows.plan import Planner, PlanStatus
from tests.fakehub.modelfiles import kohya_lora, safetensors_bytes

pytestmark = pytest.mark.hf

LORA = safetensors_bytes(kohya_lora("sd15"), seed=91)
DIGEST = hashlib.sha256(LORA).hexdigest()


class NoRegistry:
    def find_model(self, key: str) -> None:
        return None


def lockfile(tmp_path: Path, url: str) -> Path:
    return Lockfile(models=[LockedModel("loras", "ink.safetensors", len(LORA), DIGEST, url)]).save(
        tmp_path / "wf.lock.json"
    )


def test_fetch_all_takes_the_same_bytes_from_another_civitai_version(hub_env, tmp_path: Path):
    _, gone = hub_env.add_civitai_model("Ink", files=[{"name": "ink.safetensors", "data": LORA}])
    _, mirror = hub_env.add_civitai_model("Ink (reupload)", files=[{"name": "ink.safetensors", "data": LORA}])
    path = lockfile(tmp_path, f"https://civitai.com/api/download/models/{gone}")
    hub_env.delete_civitai_version(gone)
    root = tmp_path / "models"
    planner = Planner(Resolver(standalone_folders(root), registry=NoRegistry(), search=False))
    plan = planner.plan(str(path))
    (model,) = plan.models
    assert model.can_fetch and model.source is not None and model.source.version_id == mirror

    report = planner.fetch(plan)
    (item,) = report.items
    assert item.status is Status.FETCHED, item.reason
    assert (root / "loras" / "ink.safetensors").read_bytes() == LORA


def test_only_the_shared_cache_has_the_bytes(hub_env, tmp_path: Path, monkeypatch):
    hub_env.add_hf_repo("acme/ink", files={"ink.safetensors": LORA})
    path = lockfile(tmp_path, "https://huggingface.co/acme/ink/resolve/main/ink.safetensors")
    seed = tmp_path / "seed.safetensors"
    seed.write_bytes(LORA)
    cache_dir = tmp_path / "site-cache"
    cache_dir.mkdir()
    open_shared_cache(str(cache_dir)).push(seed)
    hub_env.delete_hf_repo("acme/ink")
    hub_env.valid_hf_tokens.add("hf_plain")
    monkeypatch.setenv("HF_TOKEN", "hf_plain")  # with a token the Hub's 404 says the repo is gone, not private
    root = tmp_path / "models"
    planner = Planner(
        Resolver(standalone_folders(root), registry=NoRegistry(), search=False, shared_cache=str(cache_dir))
    )
    plan = planner.plan(str(path))
    (model,) = plan.models
    assert model.status is PlanStatus.RESOLVABLE and model.can_fetch, model
    assert model.source is not None and model.source.service == "shared_cache" and "gone" in model.reason

    hub_env.requests.clear()
    (item,) = planner.fetch(plan).items
    assert item.status is Status.FETCHED, item.reason
    assert (root / "loras" / "ink.safetensors").read_bytes() == LORA
    assert hub_env.bytes_sent.total() == 0  # no origin was asked for the bytes
