"""Lockfiles: lock a workflow's models, write/read the format, resolve it in another folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from hubloader.core.errors import HubloaderError, InvalidFile
from hubloader.core.folders import standalone_folders
from hubloader.core.metadata import ModelFile, ModelMetadata, Source
from hubloader.registry import ModelRegistry
from hubloader.workflows import Resolver, Status
from hubloader.workflows.lockfile import (
    LOCKFILE_VERSION,
    LockedModel,
    Lockfile,
    lock,
    lockfile_path,
    resolve_lockfile,
    update_lockfile,
    write_lockfile,
)
from tests.fakehub.modelfiles import kohya_lora, safetensors_bytes, sd15_checkpoint
from tests.workflow_samples import node, ui_workflow

HF_URL = "https://huggingface.co/acme/models/blob/main/ckpt/base.safetensors"


def put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def machine_a(tmp_path: Path, hub_env) -> tuple[Path, Path, dict[str, bytes]]:
    """A models folder holding what the workflow needs (one LoRA in a subfolder) and the workflow file."""
    files = {
        "ckpt": safetensors_bytes(sd15_checkpoint(), seed=1),
        "lora": safetensors_bytes(kohya_lora("sd15"), seed=2),
    }
    root = tmp_path / "a" / "models"
    put(root / "checkpoints" / "base.safetensors", files["ckpt"])
    put(root / "loras" / "styles" / "ink.safetensors", files["lora"])
    graph = ui_workflow(
        [
            node(1, "CheckpointLoaderSimple", ["base.safetensors"], models=[{"name": "base.safetensors", "url": HF_URL, "directory": "checkpoints"}]),
            node(2, "LoraLoader", ["ink.safetensors", 1.0, 1.0]),
        ]
    )  # fmt: skip
    workflow = put(tmp_path / "a" / "wf.json", json.dumps(graph).encode())
    return root, workflow, files


def test_lock_local_models(machine_a):
    root, workflow, files = machine_a
    locked = lock(workflow, standalone_folders(root))
    entries = {m.name: m for m in locked.models}
    assert set(entries) == {"base.safetensors", "styles/ink.safetensors"}
    base = entries["base.safetensors"]
    assert base.kind == "checkpoints" and base.size == len(files["ckpt"])
    assert base.sha256 == hashlib.sha256(files["ckpt"]).hexdigest()
    assert base.url == "https://huggingface.co/acme/models/resolve/main/ckpt/base.safetensors"  # not the blob page
    ink = entries["styles/ink.safetensors"]
    assert ink.kind == "loras" and ink.sha256 == hashlib.sha256(files["lora"]).hexdigest() and ink.url == ""
    assert locked.workflow == "wf.json" and locked.workflow_sha256 == hashlib.sha256(workflow.read_bytes()).hexdigest()


def test_lockfile_format_round_trip(machine_a, tmp_path: Path):
    root, workflow, _ = machine_a
    path = write_lockfile(workflow, folders=standalone_folders(root))
    assert path == lockfile_path(workflow) == workflow.with_name("wf.lock.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["lockfile_version"] == LOCKFILE_VERSION
    assert set(data["models"][0]) == {
        *("kind", "name", "size", "sha256", "url", "air"),  # format 1
        *("revision", "version_id", "file_id", "required", "needs"),  # format 2
    }
    assert Lockfile.load(path).to_dict() == data


def test_resolve_keeps_identical_files_and_plans_the_rest(machine_a, tmp_path: Path, monkeypatch):
    root, workflow, files = machine_a
    locked = lock(workflow, standalone_folders(root))
    other = tmp_path / "b" / "models"
    put(other / "checkpoints" / "base.safetensors", files["ckpt"])
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example:8080")
    report = resolve_lockfile(locked, standalone_folders(other), download=False)
    items = {i.reference.name: i for i in report.items}
    assert items["base.safetensors"].status is Status.FOUND
    assert items["styles/ink.safetensors"].status is Status.UNRESOLVED  # no URL known for it
    assert "no URL" in items["styles/ink.safetensors"].reason


def test_resolve_plans_download_from_the_configured_mirror(machine_a, tmp_path: Path, monkeypatch):
    root, workflow, _ = machine_a
    locked = lock(workflow, standalone_folders(root))
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example:8080")
    report = resolve_lockfile(locked, standalone_folders(tmp_path / "empty"), download=False)
    base = next(i for i in report.items if i.reference.name == "base.safetensors")
    assert base.status is Status.RESOLVED
    assert base.chosen.url == "http://mirror.example:8080/acme/models/resolve/main/ckpt/base.safetensors"
    assert base.chosen.source == "huggingface" and base.chosen.sha256 == locked.models[0].sha256


@pytest.mark.hf
def test_a_workflow_blob_url_is_locked_as_a_url_another_machine_can_fetch(machine_a, hub_env, tmp_path: Path):
    root, workflow, files = machine_a
    hub_env.add_hf_repo("acme/models", {"ckpt/base.safetensors": files["ckpt"]})
    path = write_lockfile(workflow, folders=standalone_folders(root))
    other = tmp_path / "b" / "models"
    report = resolve_lockfile(path, standalone_folders(other), download=True)
    base = next(i for i in report.items if i.reference.name == "base.safetensors")
    assert base.status is Status.FETCHED, base.reason
    assert (other / "checkpoints" / "base.safetensors").read_bytes() == files["ckpt"]


def test_lock_takes_a_local_file_s_source_from_the_registry_but_never_a_repository_page(machine_a):
    root, workflow, files = machine_a
    digest = hashlib.sha256(files["lora"]).hexdigest()
    record = ModelMetadata(model_id="ink/styles", name="styles", source=Source.HUGGINGFACE, sha256=digest)
    record.remote_url = "https://huggingface.co/ink/styles"  # what a scanned HF cache repo keeps: no file URL
    record.files = [ModelFile("ink.safetensors", sha256=digest)]
    with ModelRegistry() as registry:
        registry.register_model(record)
    ink = next(m for m in lock(workflow, standalone_folders(root)).models if m.name == "styles/ink.safetensors")
    assert ink.url == ""

    record.files = [
        ModelFile("ink.safetensors", sha256=digest, url="https://huggingface.co/ink/styles/resolve/abc/ink.safetensors")
    ]
    with ModelRegistry() as registry:
        registry.register_model(record)
    ink = next(m for m in lock(workflow, standalone_folders(root)).models if m.name == "styles/ink.safetensors")
    assert ink.url == "https://huggingface.co/ink/styles/resolve/abc/ink.safetensors"


def test_a_different_file_at_the_locked_path_is_never_replaced(machine_a, tmp_path: Path):
    root, workflow, _ = machine_a
    locked = lock(workflow, standalone_folders(root))
    other = tmp_path / "b" / "models"
    mine = put(other / "checkpoints" / "base.safetensors", b"my own different model")
    report = resolve_lockfile(locked, standalone_folders(other), download=True)
    item = next(i for i in report.items if i.reference.name == "base.safetensors")
    assert item.status is Status.FAILED and "different file" in item.reason
    assert mine.read_bytes() == b"my own different model"


def test_lock_refuses_missing_models_it_cannot_pin(tmp_path: Path):
    workflow = put(
        tmp_path / "wf.json", json.dumps(ui_workflow([node(1, "LoraLoader", ["gone.safetensors", 1, 1])])).encode()
    )
    resolver = Resolver(standalone_folders(tmp_path / "models"), search=False, registry=_NoRegistry())
    with pytest.raises(HubloaderError, match="gone.safetensors"):
        lock(workflow, resolver=resolver)


class _NoRegistry:
    def find_model(self, key: str):
        return None


def test_bad_lockfiles_are_refused_clearly(tmp_path: Path):
    newer = put(tmp_path / "newer.lock.json", json.dumps({"lockfile_version": 99, "models": []}).encode())
    with pytest.raises(InvalidFile, match="Upgrade Hubloader"):
        Lockfile.load(newer)
    bad = {"lockfile_version": 1, "models": [{"kind": "loras", "name": "x.safetensors", "size": 1, "sha256": "abc"}]}
    with pytest.raises(InvalidFile, match="no valid SHA256"):
        Lockfile.from_dict(bad)
    with pytest.raises(InvalidFile, match="not a Hubloader lockfile"):
        Lockfile.from_dict({"models": []})
    with pytest.raises(InvalidFile, match="not valid JSON"):
        Lockfile.load(put(tmp_path / "broken.lock.json", b"{"))


# --- format 2 ----------------------------------------------------------------------------------------------------

V1 = {
    "lockfile_version": 1,
    "generator": "hubloader 0.1.0",
    "created_at": "2026-01-01T12:00:00+00:00",
    "workflow": {"name": "wf.json", "sha256": ""},
    "models": [
        {"kind": "loras", "name": "ink.safetensors", "size": 3, "sha256": "a" * 64, "url": "", "air": "civitai:1@2"}
    ],
}


def test_a_format_1_lockfile_reads_and_is_written_back_as_format_2(tmp_path: Path):
    assert LOCKFILE_VERSION == 2
    path = put(tmp_path / "old.lock.json", json.dumps(V1).encode())
    locked = Lockfile.load(path)
    (ink,) = locked.models
    assert (ink.revision, ink.version_id, ink.file_id, ink.required, ink.needs) == ("", None, None, True, [])
    locked.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["lockfile_version"] == 2
    assert {k: data["models"][0][k] for k in V1["models"][0]} == V1["models"][0]  # nothing of format 1 lost
    assert Lockfile.load(path).to_dict() == data  # and format 2 round-trips


@pytest.mark.hf
def test_lock_records_the_revision_the_licence_and_what_is_optional(hub_env, tmp_path: Path, monkeypatch):
    ckpt = safetensors_bytes(sd15_checkpoint(), seed=5)
    commit = hub_env.add_hf_repo("org/gated", {"g.safetensors": ckpt}, gated=True)
    hub_env.grant("org/gated", "hf_ok")
    root = tmp_path / "models"
    put(root / "checkpoints" / "g.safetensors", ckpt)
    put(root / "loras" / "extra.safetensors", safetensors_bytes(kohya_lora("sd15"), seed=6))
    url = "https://huggingface.co/org/gated/resolve/main/g.safetensors"
    graph = ui_workflow(
        [node(1, "CheckpointLoaderSimple", ["g.safetensors"], models=[{"name": "g.safetensors", "url": url, "directory": "checkpoints"}])],
        models=[{"name": "extra.safetensors", "directory": "loras"}],
    )  # fmt: skip
    workflow = put(tmp_path / "wf.json", json.dumps(graph).encode())
    entries = {m.name: m for m in lock(workflow, standalone_folders(root)).models}
    g = entries["g.safetensors"]
    assert g.required and g.revision == "" and {n["what"] for n in g.needs} == {"token", "licence"}
    assert {n["url"] for n in g.needs if n["what"] == "licence"} == {f"{hub_env.hf_url}/org/gated"}
    assert entries["extra.safetensors"].required is False  # listed, loaded by no node

    monkeypatch.setenv("HF_TOKEN", "hf_ok")
    g = next(m for m in lock(workflow, standalone_folders(root)).models if m.name == "g.safetensors")
    assert g.revision == commit and g.needs == []  # with access: the commit it serves, nothing unmet


@pytest.mark.hf
def test_update_refreshes_sources_but_never_the_pinned_bytes(hub_env, tmp_path: Path):
    first = safetensors_bytes(kohya_lora("sd15"), seed=7)
    hub_env.add_hf_repo("acme/style", {"style.safetensors": first})
    digest = hashlib.sha256(first).hexdigest()
    url = "https://huggingface.co/acme/style/resolve/main/style.safetensors"
    path = Lockfile(models=[LockedModel("loras", "style.safetensors", len(first), digest, url)]).save(
        tmp_path / "wf.lock.json"
    )
    locked, notes = update_lockfile(path, resolver=Resolver(standalone_folders(tmp_path / "m"), registry=_NoRegistry()))
    assert len(locked.models[0].revision) == 40 and "refreshed" in notes[0]

    hub_env.add_hf_repo("acme/style", {"style.safetensors": safetensors_bytes(kohya_lora("sd15"), seed=8)})
    locked, notes = update_lockfile(path, resolver=Resolver(standalone_folders(tmp_path / "m"), registry=_NoRegistry()))
    assert locked.models[0].sha256 == digest  # the pin is kept
    assert "now serves other bytes" in notes[0] and "not accepted" in notes[0]


@pytest.mark.hf
def test_update_moves_a_gone_source_to_one_serving_the_same_bytes(hub_env, tmp_path: Path):
    data = safetensors_bytes(kohya_lora("sd15"), seed=9)
    _, gone = hub_env.add_civitai_model("Ink", files=[{"name": "ink.safetensors", "data": data}])
    _, kept = hub_env.add_civitai_model("Ink again", files=[{"name": "ink.safetensors", "data": data}])
    digest = hashlib.sha256(data).hexdigest()
    url = f"https://civitai.com/api/download/models/{gone}"
    path = Lockfile(models=[LockedModel("loras", "ink.safetensors", len(data), digest, url)]).save(
        tmp_path / "wf.lock.json"
    )
    hub_env.delete_civitai_version(gone)
    locked, notes = update_lockfile(path, resolver=Resolver(standalone_folders(tmp_path / "m"), registry=_NoRegistry()))
    (ink,) = locked.models
    assert ink.sha256 == digest and ink.version_id == kept and f"/models/{kept}" in ink.url
    assert "is gone" in notes[0] and "same SHA256" in notes[0]


@pytest.mark.hf
def test_update_follows_a_renamed_repository_and_a_plan_says_so(hub_env, tmp_path: Path):
    from hubloader.workflows.plan import Planner, PlanStatus

    data = safetensors_bytes(kohya_lora("sd15"), seed=10)
    hub_env.add_hf_repo("newowner/style", {"style.safetensors": data})
    hub_env.rename_hf_repo("oldowner/style", "newowner/style")
    digest = hashlib.sha256(data).hexdigest()
    url = "https://huggingface.co/oldowner/style/resolve/main/style.safetensors"
    path = Lockfile(models=[LockedModel("loras", "style.safetensors", len(data), digest, url)]).save(
        tmp_path / "wf.lock.json"
    )
    resolver = Resolver(standalone_folders(tmp_path / "m"), registry=_NoRegistry())
    (model,) = Planner(resolver).plan(str(path)).models
    assert model.status is PlanStatus.RESOLVABLE and model.can_fetch
    assert model.source is not None and "moved to newowner/style" in model.source.note

    locked, notes = update_lockfile(path, resolver=resolver)
    assert locked.models[0].url == "https://huggingface.co/newowner/style/resolve/main/style.safetensors"
    assert locked.models[0].sha256 == digest and "renamed newowner/style" in notes[0]
