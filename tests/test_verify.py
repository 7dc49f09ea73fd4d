"""``verify``: every pinned file against its SHA256 (missing, changed, extra), hashes cached by size/mtime/inode;
and the ``plan``/``verify``/``lock --update`` commands as a user runs them."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from hubloader.core.folders import standalone_folders
from hubloader.library.hashcache import HashCache
from hubloader.workflows.lockfile import LockedModel, Lockfile
from hubloader.workflows.verify import CHANGED, EXTRA, MISSING, OK, verify
from tests.fakehub.modelfiles import kohya_lora, safetensors_bytes, sd15_checkpoint
from tests.test_cli import hubloader, json_lines
from tests.workflow_samples import node, ui_workflow

CKPT = safetensors_bytes(sd15_checkpoint(), seed=51)
LORA = safetensors_bytes(kohya_lora("sd15"), seed=52)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def machine(tmp_path: Path) -> tuple[Path, Path]:
    """A models folder with a checkpoint and a LoRA, a workflow using both plus an unpinned VAE, its lockfile."""
    root = tmp_path / "models"
    put(root / "checkpoints" / "base.safetensors", CKPT)
    put(root / "loras" / "styles" / "ink.safetensors", LORA)
    graph = ui_workflow(
        [
            node(1, "CheckpointLoaderSimple", ["base.safetensors"]),
            node(2, "LoraLoader", ["styles/ink.safetensors", 1.0, 1.0]),
            node(3, "VAELoader", ["vae.safetensors"]),
        ]
    )
    workflow = put(tmp_path / "wf.json", json.dumps(graph).encode())
    locked = Lockfile(
        models=[
            LockedModel("checkpoints", "base.safetensors", len(CKPT), sha(CKPT)),
            LockedModel("loras", "styles/ink.safetensors", len(LORA), sha(LORA)),
        ],
        workflow="wf.json",
    )
    locked.save(tmp_path / "wf.lock.json")
    return root, workflow


def statuses(report) -> dict[str, str]:
    return {m.name: m.status for m in report.models}


def test_unchanged_files_verify_and_cost_no_rehash(machine, tmp_path: Path):
    root, workflow = machine
    cold = HashCache()
    report = verify(tmp_path / "wf.lock.json", standalone_folders(root), hashes=cold)
    assert statuses(report) == {"base.safetensors": OK, "styles/ink.safetensors": OK, "vae.safetensors": EXTRA}
    assert cold.hashed == 2
    warm = HashCache()  # another process: the cache is on disk
    again = verify(workflow, standalone_folders(root), hashes=warm)  # the workflow finds its lockfile beside it
    assert again.pins_from.endswith("wf.lock.json") and warm.hashed == 0


def test_a_changed_file_is_named_with_both_hashes_and_only_it_is_rehashed(machine, tmp_path: Path):
    root, _ = machine
    verify(tmp_path / "wf.lock.json", standalone_folders(root), hashes=HashCache())
    changed = root / "loras" / "styles" / "ink.safetensors"
    changed.write_bytes(LORA[:-1] + b"\x01")
    hashes = HashCache()
    report = verify(tmp_path / "wf.lock.json", standalone_folders(root), hashes=hashes)
    ink = next(m for m in report.models if m.name == "styles/ink.safetensors")
    assert ink.status == CHANGED and ink.expected == sha(LORA) and ink.actual == sha(changed.read_bytes())
    assert str(changed) in ink.message() and sha(LORA) in ink.message() and ink.actual in ink.message()
    assert hashes.hashed == 1 and not report.ok


def test_a_touched_file_with_the_same_size_is_rehashed(machine, tmp_path: Path):
    root, _ = machine
    base = root / "checkpoints" / "base.safetensors"
    verify(tmp_path / "wf.lock.json", standalone_folders(root), hashes=HashCache())
    stat = base.stat()
    os.utime(base, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    hashes = HashCache()
    verify(tmp_path / "wf.lock.json", standalone_folders(root), hashes=hashes)
    assert hashes.hashed == 1


def test_missing_models_and_a_workflow_s_own_hashes(tmp_path: Path):
    root = tmp_path / "models"
    put(root / "loras" / "ink.safetensors", LORA)
    models = [
        {"name": "ink.safetensors", "directory": "loras", "hash": sha(LORA), "hash_type": "SHA256"},
        {"name": "gone.safetensors", "directory": "loras", "hash": sha(CKPT), "hash_type": "SHA256"},
    ]
    graph = ui_workflow(
        [node(1, "LoraLoader", ["ink.safetensors", 1, 1]), node(2, "LoraLoader", ["gone.safetensors", 1, 1])],
        models=models,
    )
    report = verify(graph, standalone_folders(root), hashes=HashCache())
    assert report.pins_from == "workflow"
    assert statuses(report) == {"ink.safetensors": OK, "gone.safetensors": MISSING}


def test_verify_command_exit_codes(machine, tmp_path: Path):
    root, workflow = machine
    lockfile = str(tmp_path / "wf.lock.json")
    result = hubloader("verify", lockfile, "--models-dir", str(root))
    assert result.returncode == 3 and "vae.safetensors" in result.stderr  # extra: used but not pinned
    (root / "loras" / "styles" / "ink.safetensors").write_bytes(b"changed")
    result = hubloader("verify", lockfile, "--models-dir", str(root), "--json")
    assert result.returncode == 5 and sha(LORA) in result.stderr and sha(b"changed") in result.stderr
    (report,) = json_lines(result.stdout)
    assert report["counts"]["changed"] == 1 and report["ok"] is False


@pytest.mark.hf
def test_plan_command_json_and_table(hub_env, tmp_path: Path):
    hub_env.add_hf_repo("acme/base", files={"base.safetensors": CKPT})
    url = "https://huggingface.co/acme/base/resolve/main/base.safetensors"
    models = [{"name": "base.safetensors", "url": url, "directory": "checkpoints"}]
    workflow = put(
        tmp_path / "wf.json",
        json.dumps(ui_workflow([node(1, "CheckpointLoaderSimple", ["base.safetensors"], models=models)])).encode(),
    )
    result = hubloader("plan", str(workflow), "--models-dir", str(tmp_path / "m"), "--json")
    assert result.returncode == 0, result.stderr
    (plan,) = json_lines(result.stdout)
    assert plan["can_fetch_all"] and plan["totals"]["bytes_to_fetch"] == len(CKPT)
    assert plan["models"][0]["status"] == "resolvable" and plan["models"][0]["source"]["service"] == "huggingface"
    table = hubloader("plan", str(workflow), "--models-dir", str(tmp_path / "m"))
    assert "resolvable" in table.stdout and "1 to fetch" in table.stdout


@pytest.mark.hf
def test_lock_update_command_keeps_the_pin(hub_env, tmp_path: Path):
    hub_env.add_hf_repo("acme/style", {"style.safetensors": LORA})
    url = "https://huggingface.co/acme/style/resolve/main/style.safetensors"
    path = Lockfile(models=[LockedModel("loras", "style.safetensors", len(LORA), sha(LORA), url)]).save(
        tmp_path / "wf.lock.json"
    )
    hub_env.add_hf_repo("acme/style", {"style.safetensors": CKPT})  # a new commit serving other bytes
    result = hubloader("lock", str(path), "--update")
    assert result.returncode == 1 and "not accepted" in result.stderr
    assert Lockfile.load(path).models[0].sha256 == sha(LORA)


@pytest.mark.hf
def test_resolve_download_shows_the_plan_before_fetching(hub_env, tmp_path: Path):
    hub_env.add_hf_repo("acme/base", files={"base.safetensors": CKPT})
    hub_env.add_hf_repo("org/gated", files={"g.safetensors": LORA}, gated=True)
    models = [
        {"name": "base.safetensors", "url": "https://huggingface.co/acme/base/resolve/main/base.safetensors", "directory": "checkpoints"},
        {"name": "g.safetensors", "url": "https://huggingface.co/org/gated/resolve/main/g.safetensors", "directory": "loras"},
    ]  # fmt: skip
    graph = ui_workflow([node(1, "CheckpointLoaderSimple", ["base.safetensors"]), node(2, "LoraLoader", ["g.safetensors", 1, 1])], models=models)  # fmt: skip
    workflow = put(tmp_path / "wf.json", json.dumps(graph).encode())
    planned = hubloader("plan", str(workflow), "--models-dir", str(tmp_path / "m"))
    assert planned.returncode == 1  # the gated one cannot be fetched now, and the plan says why
    assert f"needs its licence accepted at {hub_env.hf_url}/org/gated" in planned.stdout
    result = hubloader("resolve", str(workflow), "--download", "--models-dir", str(tmp_path / "m"))
    # The plan first (on stderr, beside the progress), then the fetch; stdout keeps the result table.
    assert result.stderr.index("1 to fetch") < result.stderr.index("downloaded base.safetensors")
    assert "1 to fetch" not in result.stdout and "fetched" in result.stdout
    assert (tmp_path / "m" / "checkpoints" / "base.safetensors").read_bytes() == CKPT
