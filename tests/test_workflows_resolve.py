"""Resolution and fetching against the loopback hub: by URL, wrong hashes refused, lockfile round trip."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from hubloader.core.folders import standalone_folders
from hubloader.workflows import Resolver, Status
from hubloader.workflows.lockfile import lock, resolve_lockfile
from tests.fakehub.modelfiles import kohya_lora, safetensors_bytes, sd15_checkpoint
from tests.workflow_samples import node, template, ui_workflow

pytestmark = pytest.mark.hf

REPO = "Comfy-Org/z_image_turbo"
TEMPLATE_FILES = {
    "split_files/text_encoders/qwen_3_4b.safetensors": safetensors_bytes(sd15_checkpoint(), seed=11),
    "split_files/vae/ae.safetensors": safetensors_bytes(kohya_lora("sd15"), seed=12),
    "split_files/diffusion_models/z_image_turbo_bf16.safetensors": safetensors_bytes(sd15_checkpoint(), seed=13),
}


class NoRegistry:
    """This machine's registry knows nothing (keeps these tests about the hub)."""

    def find_model(self, key: str):
        return None


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def hub(hub_env):
    hub_env.add_hf_repo(REPO, files=TEMPLATE_FILES)
    return hub_env


def resolver_for(root: Path, **options) -> Resolver:
    return Resolver(standalone_folders(root), registry=NoRegistry(), search=False, **options)


def test_template_resolves_by_url_and_fetches_verified_into_the_right_folders(hub, tmp_path: Path):
    root = tmp_path / "models"
    resolver = resolver_for(root)
    report = resolver.resolve(template())
    assert [i.status for i in report.items] == [Status.RESOLVED] * 3
    vae = next(i for i in report.items if i.reference.name == "ae.safetensors")
    assert vae.chosen.source == "huggingface" and vae.chosen.confidence >= 0.9
    assert vae.chosen.url.startswith(hub.hf_url)  # huggingface.co rewritten to HF_ENDPOINT
    assert vae.chosen.sha256 == sha(TEMPLATE_FILES["split_files/vae/ae.safetensors"])

    resolver.fetch(report)
    assert report.counts()["fetched"] == 3, report.to_dict()
    assert (root / "vae" / "ae.safetensors").read_bytes() == TEMPLATE_FILES["split_files/vae/ae.safetensors"]
    assert (root / "text_encoders" / "qwen_3_4b.safetensors").is_file()
    assert (root / "diffusion_models" / "z_image_turbo_bf16.safetensors").is_file()
    assert vae.use_as == "ae.safetensors"

    # A second look finds everything locally and asks the hub nothing.
    hub.requests.clear()
    again = resolver.resolve(template())
    assert {i.status for i in again.items} == {Status.FOUND}
    assert hub.requests == []


def test_blob_urls_are_read_as_resolve_urls(hub, tmp_path: Path):
    url = f"https://huggingface.co/{REPO}/blob/main/split_files/vae/ae.safetensors"
    graph = ui_workflow(
        [node(1, "VAELoader", ["ae.safetensors"], models=[{"name": "ae.safetensors", "url": url, "directory": "vae"}])]
    )
    report = resolver_for(tmp_path / "m").run(graph, download=True)
    (item,) = report.items
    assert item.status is Status.FETCHED and "/resolve/main/" in item.chosen.url


def test_subfolder_match_needs_no_download(hub, tmp_path: Path):
    root = tmp_path / "models"
    (root / "vae" / "flux").mkdir(parents=True)
    (root / "vae" / "flux" / "ae.safetensors").write_bytes(b"local copy")
    hub.requests.clear()
    report = resolver_for(root).run(template(), download=True)
    vae = next(i for i in report.items if i.reference.name == "ae.safetensors")
    assert vae.status is Status.FOUND_ELSEWHERE and vae.use_as == str(Path("flux") / "ae.safetensors")
    assert not any("ae.safetensors" in str(r) for r in hub.requests)


def test_workflow_hash_that_disagrees_with_the_source_is_refused(hub, tmp_path: Path):
    url = f"https://huggingface.co/{REPO}/resolve/main/split_files/vae/ae.safetensors"
    entry = {"name": "ae.safetensors", "url": url, "directory": "vae", "hash": "0" * 64, "hash_type": "SHA256"}
    graph = ui_workflow([node(1, "VAELoader", ["ae.safetensors"], models=[entry])])
    report = resolver_for(tmp_path / "m").run(graph, download=True)
    (item,) = report.items
    assert item.status is Status.FAILED and "SHA256" in item.reason
    assert not (tmp_path / "m" / "vae" / "ae.safetensors").exists()


def test_corrupted_bytes_are_refused_and_nothing_is_placed(hub, tmp_path: Path):
    hub.faults.wrong_bytes = 100
    report = resolver_for(tmp_path / "m").run(template(), download=True)
    assert {i.status for i in report.items} == {Status.FAILED}
    assert not list((tmp_path / "m").rglob("*.safetensors"))


def test_lockfile_round_trip_reproduces_the_same_bytes(hub, tmp_path: Path):
    machine_a, machine_b = tmp_path / "a", tmp_path / "b"
    workflow = tmp_path / "wf.json"
    workflow.write_text(json.dumps(template()), encoding="utf-8")
    locked = lock(workflow, resolver=resolver_for(machine_a), download=True)
    assert len(locked.models) == 3
    assert all(m.url.startswith("https://huggingface.co/") for m in locked.models)  # public host, not the mirror
    path = locked.save(tmp_path / "wf.lock.json")

    report = resolve_lockfile(path, standalone_folders(machine_b), resolver=resolver_for(machine_b))
    assert report.counts()["fetched"] == 3, report.to_dict()
    for model in locked.models:
        a, b = machine_a / model.kind / model.name, machine_b / model.kind / model.name
        assert sha(b.read_bytes()) == sha(a.read_bytes()) == model.sha256

    again = resolve_lockfile(path, standalone_folders(machine_b), resolver=resolver_for(machine_b))
    assert {i.status for i in again.items} == {Status.FOUND}


def test_missing_repo_file_is_unresolved_with_the_reason(hub, tmp_path: Path):
    url = f"https://huggingface.co/{REPO}/resolve/main/nope.safetensors"
    graph = ui_workflow(
        [
            node(
                1,
                "LoraLoader",
                ["nope.safetensors", 1, 1],
                models=[{"name": "nope.safetensors", "url": url, "directory": "loras"}],
            )
        ]
    )
    (item,) = resolver_for(tmp_path / "m").resolve(graph).items
    assert item.status is Status.UNRESOLVED and "URL failed" in item.reason


def test_a_name_placed_apart_is_fetched_to_its_own_folder_not_matched_to_a_same_named_other_file(hub, tmp_path):
    sd15, sdxl = (safetensors_bytes(kohya_lora(), seed=s) for s in (81, 82))
    hub.add_hf_repo("ink/styles", {"sd15/style-0.safetensors": sd15, "sdxl/style-0.safetensors": sdxl})
    root = tmp_path / "models"
    (root / "loras").mkdir(parents=True)
    (root / "loras" / "style-0.safetensors").write_bytes(sd15)  # the other repository's file of that name
    name = "ink__styles/sdxl/style-0.safetensors"
    url = "https://huggingface.co/ink/styles/resolve/main/sdxl/style-0.safetensors"
    models = [{"name": name, "url": url, "directory": "loras"}]
    graph = ui_workflow([node(1, "LoraLoaderModelOnly", [name, 1.0], models=models)])

    report = resolver_for(root).run(graph, download=True)

    (item,) = report.items
    assert item.status is Status.FETCHED, report.to_dict()
    assert (root / "loras" / "ink__styles" / "sdxl" / "style-0.safetensors").read_bytes() == sdxl
    assert (root / "loras" / "style-0.safetensors").read_bytes() == sd15
