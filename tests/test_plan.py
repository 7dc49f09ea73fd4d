"""Install plans against the loopback hubs: each status, each need, the disk check, the same-bytes fallback."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from hubloader.core.folders import standalone_folders
from hubloader.engine.speeds import recent_speed
from hubloader.library.hashcache import HashCache
from hubloader.workflows import Resolver
from hubloader.workflows.lockfile import LockedModel, Lockfile
from hubloader.workflows.plan import InstallPlan, Planner, PlanStatus
from tests.fakehub.modelfiles import kohya_lora, safetensors_bytes, sd15_checkpoint
from tests.workflow_samples import node, ui_workflow

pytestmark = pytest.mark.hf

CKPT = safetensors_bytes(sd15_checkpoint(), seed=31)
LORA = safetensors_bytes(kohya_lora("sd15"), seed=32)
OTHER = safetensors_bytes(kohya_lora("sd15"), seed=33)


class NoRegistry:
    """This machine's registry knows nothing (keeps these tests about the hubs and the disk)."""

    def find_model(self, key: str) -> None:
        return None


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def planner(root: Path, *, search: bool = False) -> Planner:
    return Planner(Resolver(standalone_folders(root), registry=NoRegistry(), search=search))


def entry(name: str, url: str, directory: str, digest: str = "") -> dict:
    data = {"name": name, "url": url, "directory": directory}
    return {**data, "hash": digest, "hash_type": "SHA256"} if digest else data


def loader(node_id: int, node_type: str, name: str, url: str, directory: str, digest: str = "") -> dict:
    return node(node_id, node_type, [name], models=[entry(name, url, directory, digest)])


def by_name(plan: InstallPlan) -> dict:
    return {m.name: m for m in plan.models}


def test_each_status_and_the_totals(hub_env, tmp_path: Path):
    hub_env.add_hf_repo("acme/base", files={"base.safetensors": CKPT})
    root = tmp_path / "models"
    put(root / "loras" / "here.safetensors", LORA)
    elsewhere = put(tmp_path / "downloads" / "style.safetensors", OTHER)
    HashCache().sha256(elsewhere)  # a file Hubloader has hashed before (verify, scan) outside the model folders
    graph = ui_workflow(
        [
            loader(1, "CheckpointLoaderSimple", "base.safetensors",
                   "https://huggingface.co/acme/base/resolve/main/base.safetensors", "checkpoints"),
            loader(2, "LoraLoader", "here.safetensors", "", "loras", sha(LORA)),
            loader(3, "LoraLoader", "style.safetensors", "", "loras", sha(OTHER)),
            node(4, "VAELoader", ["nowhere.safetensors"]),
        ]
    )  # fmt: skip
    plan = planner(root).plan(graph)
    models = by_name(plan)

    base = models["base.safetensors"]
    assert base.status is PlanStatus.RESOLVABLE and base.can_fetch, base
    assert base.size == len(CKPT) and base.sha256 == sha(CKPT)
    assert base.destination == str(root / "checkpoints" / "base.safetensors")
    assert base.source is not None and base.source.service == "huggingface" and base.source.confidence >= 0.9
    assert len(base.source.revision) == 40  # the commit the Hub serves it from

    assert models["here.safetensors"].status is PlanStatus.PRESENT
    style = models["style.safetensors"]
    assert style.status is PlanStatus.PRESENT_ELSEWHERE and style.path == str(elsewhere.resolve())
    assert style.reuse == "link" and style.destination == str(root / "loras" / "style.safetensors")
    nowhere = models["nowhere.safetensors"]
    assert nowhere.status is PlanStatus.UNAVAILABLE and not nowhere.can_fetch and nowhere.why_not

    report = planner(root).fetch(plan)  # "Fetch all": the reused file is linked, the resolvable one fetched
    fetched = {i.reference.name: i for i in report.items}
    assert fetched["style.safetensors"].path == root / "loras" / "style.safetensors"
    assert (root / "loras" / "style.safetensors").stat().st_ino == elsewhere.stat().st_ino  # a link, not a copy
    assert fetched["base.safetensors"].status.value == "fetched"
    assert (root / "checkpoints" / "base.safetensors").read_bytes() == CKPT

    data = json.loads(plan.to_json())
    assert data["totals"]["bytes_to_fetch"] == len(CKPT) and data["totals"]["files_reused"] == 1
    assert data["totals"]["filesystems"][0]["fits"] is True
    assert data["can_fetch_all"] is False  # nowhere.safetensors cannot be fetched
    assert data["counts"] == {"present": 1, "present_elsewhere": 1, "resolvable": 1, "ambiguous": 0, "unavailable": 1}


def test_ambiguous_when_two_different_files_share_the_name(hub_env, tmp_path: Path):
    hub_env.add_civitai_model("Twin One", files=[{"name": "twin.safetensors", "data": LORA}])
    hub_env.add_civitai_model("Twin Two", files=[{"name": "twin.safetensors", "data": OTHER}])
    plan = planner(tmp_path / "m", search=True).plan(ui_workflow([node(1, "LoraLoader", ["twin.safetensors"])]))
    (twin,) = plan.models
    assert twin.status is PlanStatus.AMBIGUOUS and not twin.can_fetch
    assert {c.sha256 for c in twin.candidates} == {sha(LORA), sha(OTHER)}


def test_gated_repo_needs_a_token_and_its_licence_then_can_be_fetched(hub_env, tmp_path: Path, monkeypatch):
    hub_env.add_hf_repo("org/gated", files={"g.safetensors": CKPT}, gated=True)
    url = "https://huggingface.co/org/gated/resolve/main/g.safetensors"
    graph = ui_workflow([loader(1, "CheckpointLoaderSimple", "g.safetensors", url, "checkpoints")])
    (model,) = planner(tmp_path / "m").plan(graph).models
    assert model.status is PlanStatus.RESOLVABLE and not model.can_fetch
    needs = {n.what: n for n in model.needs}
    assert set(needs) == {"token", "licence"} and not needs["token"].met
    assert needs["licence"].url == f"{hub_env.hf_url}/org/gated"
    assert "licence" in model.why_not and "HuggingFace token" in model.why_not

    hub_env.grant("org/gated", "hf_granted")
    monkeypatch.setenv("HF_TOKEN", "hf_granted")
    (model,) = planner(tmp_path / "m").plan(graph).models
    assert model.can_fetch and model.size == len(CKPT), model.why_not


def test_token_without_the_licence_accepted_still_needs_the_licence(hub_env, tmp_path: Path, monkeypatch):
    hub_env.add_hf_repo("org/gated", files={"g.safetensors": CKPT}, gated=True)
    hub_env.valid_hf_tokens.add("hf_plain")
    monkeypatch.setenv("HF_TOKEN", "hf_plain")
    url = "https://huggingface.co/org/gated/resolve/main/g.safetensors"
    graph = ui_workflow([loader(1, "CheckpointLoaderSimple", "g.safetensors", url, "checkpoints")])
    (model,) = planner(tmp_path / "m").plan(graph).models
    needs = {n.what: n for n in model.needs}
    assert needs["token"].met and not needs["licence"].met and not model.can_fetch


@pytest.mark.parametrize(
    ("rules", "need", "fetchable_with_key"),
    [
        ({"early_access": True}, "early_access", False),
        ({"login_required": True}, "login", True),
        ({"downloads_disabled": True}, "downloads_disabled", False),
        ({"archived": True}, "archived", False),
    ],
)
def test_civitai_states(hub_env, tmp_path: Path, monkeypatch, rules: dict, need: str, fetchable_with_key: bool):
    _, version = hub_env.add_civitai_model("Locked", files=[{"name": "locked.safetensors", "data": LORA}], **rules)
    url = f"https://civitai.com/api/download/models/{version}"
    graph = ui_workflow([loader(1, "LoraLoader", "locked.safetensors", url, "loras")])
    (model,) = planner(tmp_path / "m").plan(graph).models
    assert need in {n.what for n in model.needs}, model
    assert not model.can_fetch and model.why_not
    found = next(n for n in model.needs if n.what == need)
    assert found.url.endswith(f"/model-versions/{version}")
    if need in ("downloads_disabled", "archived"):
        assert model.status is PlanStatus.UNAVAILABLE

    hub_env.civitai_tokens.add("civ_key")
    monkeypatch.setenv("CIVITAI_API_TOKEN", "civ_key")
    (model,) = planner(tmp_path / "m").plan(graph).models
    assert model.can_fetch is fetchable_with_key, model.why_not


def test_a_disk_too_small_is_said_before_fetching(hub_env, tmp_path: Path, monkeypatch):
    hub_env.add_hf_repo("acme/base", files={"base.safetensors": CKPT})
    root = tmp_path / "models"
    root.mkdir()
    real = shutil.disk_usage

    def usage(path):  # the OS's answer for a nearly full disk under `root`; our code is not replaced
        seen = real(path)
        if Path(path).resolve().is_relative_to(root.resolve()):
            return type(seen)(seen.total, seen.total - 1000, 1000)
        return seen

    monkeypatch.setattr(shutil, "disk_usage", usage)
    url = "https://huggingface.co/acme/base/resolve/main/base.safetensors"
    plan = planner(root).plan(
        ui_workflow([loader(1, "CheckpointLoaderSimple", "base.safetensors", url, "checkpoints")])
    )
    (model,) = plan.models
    assert model.status is PlanStatus.RESOLVABLE and not model.can_fetch and "free space" in model.why_not
    (fs,) = plan.filesystems
    assert fs.free == 1000 and not fs.fits and fs.bytes_to_fetch == len(CKPT)


def test_a_different_file_under_the_name_sends_the_download_apart(hub_env, tmp_path: Path):
    hub_env.add_hf_repo("acme/base", files={"base.safetensors": CKPT})
    root = tmp_path / "models"
    put(root / "checkpoints" / "base.safetensors", OTHER)
    url = "https://huggingface.co/acme/base/resolve/main/base.safetensors"
    graph = ui_workflow([loader(1, "CheckpointLoaderSimple", "base.safetensors", url, "checkpoints", sha(CKPT))])
    (model,) = planner(root).plan(graph).models
    assert model.status is PlanStatus.RESOLVABLE and "different file" in model.reason
    assert model.destination == str(root / "checkpoints" / "acme__base" / "base.safetensors")


def test_time_estimate_uses_the_speed_of_the_last_downloads(hub_env, tmp_path: Path):
    big = safetensors_bytes(sd15_checkpoint(), seed=40) + b"\0" * 0  # small file, slowed down below
    hub_env.add_hf_repo("acme/slow", files={"slow.safetensors": big})
    hub_env.add_hf_repo("acme/base", files={"base.safetensors": CKPT})
    hub_env.faults.bandwidth_per_connection = max(len(big) * 5, 1)  # ~0.2 s
    root = tmp_path / "models"
    slow = "https://huggingface.co/acme/slow/resolve/main/slow.safetensors"
    Resolver(standalone_folders(root), registry=NoRegistry(), search=False).run(
        ui_workflow([loader(1, "CheckpointLoaderSimple", "slow.safetensors", slow, "checkpoints")]), download=True
    )
    hub_env.faults.bandwidth_per_connection = None
    speed = recent_speed()
    assert speed is not None and speed > 0
    url = "https://huggingface.co/acme/base/resolve/main/base.safetensors"
    plan = planner(root).plan(
        ui_workflow([loader(1, "CheckpointLoaderSimple", "base.safetensors", url, "checkpoints")])
    )
    assert plan.speed_bps == speed and plan.seconds_estimate == pytest.approx(len(CKPT) / speed)


def _lock_one(tmp_path: Path, url: str, digest: str, size: int, air: str = "") -> Path:
    locked = Lockfile(models=[LockedModel("loras", "pinned.safetensors", size, digest, url, air)])
    return locked.save(tmp_path / "wf.lock.json")


def test_same_bytes_fallback_when_the_pinned_civitai_version_is_deleted(hub_env, tmp_path: Path):
    model_id, gone = hub_env.add_civitai_model("Style", files=[{"name": "style.safetensors", "data": LORA}])
    hub_env.add_civitai_version(
        model_id, "v2 fp8", files=[{"name": "style_fp8.safetensors", "data": OTHER, "fp": "fp8"}]
    )
    _, mirror = hub_env.add_civitai_model("Style reupload", files=[{"name": "style.safetensors", "data": LORA}])
    path = _lock_one(
        tmp_path,
        f"https://civitai.com/api/download/models/{gone}",
        sha(LORA),
        len(LORA),
        f"urn:air:sdxl:lora:civitai:{model_id}@{gone}",
    )
    hub_env.delete_civitai_version(gone)

    (model,) = planner(tmp_path / "m").plan(str(path)).models
    assert model.status is PlanStatus.RESOLVABLE and model.can_fetch, model
    assert "pinned source is gone" in model.reason
    assert model.source is not None and model.source.version_id == mirror and model.source.sha256 == sha(LORA)
    assert model.source.same_bytes
    (similar,) = model.similar  # the fp8 of the same model: listed, and marked as NOT the same
    assert not similar.same_bytes and similar.sha256 == sha(OTHER) and "NOT the same" in similar.note


def test_pinned_source_gone_and_nothing_else_serves_the_bytes(hub_env, tmp_path: Path, monkeypatch):
    hub_env.add_hf_repo("acme/old", files={"pinned.safetensors": LORA})
    path = _lock_one(tmp_path, "https://huggingface.co/acme/old/resolve/main/pinned.safetensors", sha(LORA), len(LORA))
    hub_env.delete_hf_repo("acme/old")
    # Without a token the Hub answers a deleted repo as it answers a private one: a token might see it.
    (model,) = planner(tmp_path / "m").plan(str(path)).models
    assert not model.can_fetch and [n.what for n in model.needs] == ["token"]
    assert "or is private" in model.why_not or "token" in model.why_not

    hub_env.valid_hf_tokens.add("hf_plain")
    monkeypatch.setenv("HF_TOKEN", "hf_plain")
    (model,) = planner(tmp_path / "m").plan(str(path)).models
    assert model.status is PlanStatus.UNAVAILABLE and not model.can_fetch
    assert "no other source serves the same SHA256" in model.why_not


def test_plan_is_exported_and_a_python_call(hub_env, tmp_path: Path):
    import hubloader

    hub_env.add_hf_repo("acme/base", files={"base.safetensors": CKPT})
    workflow = tmp_path / "wf.json"
    url = "https://huggingface.co/acme/base/resolve/main/base.safetensors"
    workflow.write_text(
        json.dumps(ui_workflow([loader(1, "CheckpointLoaderSimple", "base.safetensors", url, "checkpoints")]))
    )
    plan = hubloader.plan(str(workflow), standalone_folders(tmp_path / "m"))
    assert plan.source == str(workflow) and plan.models[0].status is PlanStatus.RESOLVABLE


def test_a_png_with_a_workflow_and_an_a1111_infotext_are_planned(hub_env, tmp_path: Path):
    from tests.workflow_samples import save_png

    hub_env.add_hf_repo("acme/base", files={"base.safetensors": CKPT})
    url = "https://huggingface.co/acme/base/resolve/main/base.safetensors"
    graph = ui_workflow([loader(1, "CheckpointLoaderSimple", "base.safetensors", url, "checkpoints")])
    image = save_png(tmp_path / "out.png", workflow=json.dumps(graph))
    (model,) = planner(tmp_path / "m").plan(str(image)).models
    assert model.status is PlanStatus.RESOLVABLE and model.size == len(CKPT)

    root = tmp_path / "m"
    put(root / "loras" / "ink.safetensors", LORA)
    infotext = "a cat <lora:ink:0.8>\nSteps: 20, Sampler: Euler a"
    text = tmp_path / "params.txt"
    text.write_text(infotext, encoding="utf-8")
    (lora,) = planner(root).plan(str(text)).models
    assert lora.status is PlanStatus.PRESENT and lora.kind == "loras"


def test_a_lockfile_whose_path_holds_another_file_plans_it_apart(hub_env, tmp_path: Path):
    hub_env.add_hf_repo("acme/base", files={"base.safetensors": CKPT})
    root = tmp_path / "models"
    put(root / "checkpoints" / "base.safetensors", OTHER)  # the user's own, different file: kept
    url = "https://huggingface.co/acme/base/resolve/main/base.safetensors"
    locked = Lockfile(models=[LockedModel("checkpoints", "base.safetensors", len(CKPT), sha(CKPT), url)])
    (model,) = planner(root).plan(str(locked.save(tmp_path / "wf.lock.json"))).models
    assert model.status is PlanStatus.RESOLVABLE and not model.can_fetch
    assert model.destination == str(root / "checkpoints" / "acme__base" / "base.safetensors")
    assert "it is kept" in model.why_not


def test_present_elsewhere_through_the_registry(hub_env, tmp_path: Path):
    from hubloader.core.metadata import ModelMetadata, Source
    from hubloader.registry import ModelRegistry

    elsewhere = put(tmp_path / "archive" / "ink-v1.safetensors", LORA)
    record = ModelMetadata(model_id="ink/style", name="ink", source=Source.HUGGINGFACE, sha256=sha(LORA))
    record.local_path = elsewhere
    with ModelRegistry() as registry:
        registry.register_model(record)
    root = tmp_path / "models"
    graph = ui_workflow([loader(1, "LoraLoader", "ink.safetensors", "", "loras", sha(LORA))])
    (model,) = Planner(Resolver(standalone_folders(root), search=False)).plan(graph).models
    assert model.status is PlanStatus.PRESENT_ELSEWHERE and model.path == str(elsewhere)
    assert model.reuse in ("link", "copy") and model.destination == str(root / "loras" / "ink.safetensors")


@pytest.mark.hf
def test_a_plain_get_counts_toward_the_time_estimate(hub_env, tmp_path: Path):
    """Every transfer through the gate is recorded, not only the resolver's: `hubloader get` too."""
    from hubloader import HuggingFaceHubService

    big = safetensors_bytes(sd15_checkpoint(), seed=41)
    hub_env.add_hf_repo("acme/got", files={"got.safetensors": big})
    hub_env.faults.bandwidth_per_connection = max(len(big) * 5, 1)  # ~0.2 s
    assert recent_speed() is None
    HuggingFaceHubService().download_model("acme/got/got.safetensors", cache_dir=tmp_path / "cache")
    assert (recent_speed() or 0) > 0
