"""hubloader.pipeline: the one fetch → describe → sidecars → registry pipeline every face runs, on the loopback hubs."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from hubloader import pipeline as place
from hubloader.core.errors import HubloaderError, IntegrityError, InvalidReference
from hubloader.core.folders import standalone_folders
from hubloader.core.metadata import ModelMetadata, ModelType, Source
from hubloader.registry import ModelRegistry, registry_state
from hubloader.workflows.fetching import fetch_resolved
from tests.fakehub.modelfiles import kohya_lora, safetensors_bytes, sd15_checkpoint

LORA = safetensors_bytes(kohya_lora(), seed=11)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_civitai_reference_lands_in_its_type_folder_described_with_sidecars_and_registered(hub_env, tmp_path):
    model_id, version_id = hub_env.add_civitai_model(
        "Ink Wash",
        files=[{"name": "inkwash.safetensors", "data": LORA}],
        trained_words=["inkwash"],
        settings={"strength": 0.6},
    )
    folders = standalone_folders(tmp_path / "models")

    placed = place.fetch(f"civitai:{model_id}", folders)
    path = tmp_path / "models" / "loras" / "inkwash.safetensors"
    assert (placed.path, placed.kind, placed.reused, placed.sha256) == (path, "loras", False, sha(LORA))
    assert placed.url == f"{hub_env.civitai_url}/api/download/models/{version_id}"
    with ModelRegistry() as registry:
        meta = place.describe_and_register(placed.path, placed.source, registry, reused=placed.reused)
    assert meta.model_id == f"civitai:{model_id}@{version_id}" and meta.local_path == path
    assert meta.trigger_words == ["inkwash"] and meta.recommended_weight == 0.6
    assert registry_state(meta)["managed"] is True
    assert json.loads(path.with_suffix(".json").read_text())["activation text"] == "inkwash"
    assert (path.parent / "inkwash.preview.png").is_file() and (path.parent / "inkwash.hubloader.json").is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == [  # no .part, no .lock beside the model
        "inkwash.hubloader.json",
        "inkwash.json",
        "inkwash.preview.png",
        "inkwash.safetensors",
    ]

    sent = hub_env.bytes_sent.total()
    again = place.fetch(f"civitai:{model_id}", folders)
    assert again.reused and again.path == path and hub_env.bytes_sent.total() == sent
    with ModelRegistry() as registry:
        same = place.describe_and_register(again.path, again.source, registry, reused=True)
    assert same.model_id == meta.model_id and registry_state(same)["managed"] is True  # still our download


def test_a_hash_fetches_the_very_file_it_names_and_save_as_keeps_a_workflows_name(hub_env, tmp_path):
    other = safetensors_bytes(kohya_lora(), seed=12)
    hub_env.add_civitai_model(
        "Two Files",
        files=[{"name": "first.safetensors", "data": LORA}, {"name": "second.safetensors", "data": other}],
    )
    placed = place.fetch(sha(other).upper(), tmp_path / "flat", save_as="as_in_workflow.safetensors")
    assert placed.path == tmp_path / "flat" / "as_in_workflow.safetensors"
    assert placed.path.read_bytes() == other and placed.sha256 == sha(other)


def test_a_search_result_and_its_chosen_file(hub_env, tmp_path):
    from hubloader.sources.civitai import CivitAIService

    other = safetensors_bytes(kohya_lora(), seed=13)
    model_id, version_id = hub_env.add_civitai_model(
        "Pick Me",
        files=[{"name": "a.safetensors", "data": LORA}, {"name": "b.safetensors", "data": other}],
    )
    meta = CivitAIService().get_model_version(version_id)
    placed = place.fetch(meta, standalone_folders(tmp_path), file="b.safetensors")
    assert placed.path == tmp_path / "loras" / "b.safetensors" and placed.path.read_bytes() == other


@pytest.mark.hf
def test_a_huggingface_file_is_linked_from_the_hf_cache_and_a_repo_with_one_weight_is_that_file(hub_env, tmp_path):
    checkpoint = safetensors_bytes(sd15_checkpoint(), seed=5)
    hub_env.add_hf_repo("ink/base", {"README.md": b"# base\n", "base.safetensors": checkpoint})
    folders = standalone_folders(tmp_path / "models")

    placed = place.fetch("ink/base", folders)
    path = tmp_path / "models" / "checkpoints" / "base.safetensors"
    assert (placed.path, placed.kind, placed.sha256) == (path, "checkpoints", sha(checkpoint))
    assert placed.url.endswith("/ink/base/resolve/main/base.safetensors")
    assert path.read_bytes() == checkpoint
    with ModelRegistry() as registry:
        meta = place.describe_and_register(placed.path, placed.source, registry)
    assert meta.source is Source.HUGGINGFACE and meta.type is ModelType.BASE_MODEL and meta.sha256 == sha(checkpoint)
    assert path.with_suffix(".json").is_file()

    assert place.fetch("ink/base/base.safetensors", folders).reused  # same bytes already there: kept


def test_a_plain_url_needs_a_kind_then_downloads_and_registers_as_a_url_source(hub_env, tmp_path):
    url = hub_env.add_file("files/plain.safetensors", LORA)
    with pytest.raises(InvalidReference, match="neither a HuggingFace nor a CivitAI"):
        place.fetch(url, standalone_folders(tmp_path))
    assert not list(tmp_path.rglob("*.safetensors"))

    placed = place.fetch(url, standalone_folders(tmp_path), kind=ModelType.LORA)
    assert placed.path == tmp_path / "loras" / "plain.safetensors" and placed.sha256 == sha(LORA)
    with ModelRegistry() as registry:
        meta = place.describe_and_register(placed.path, placed.source, registry, model_type=ModelType.LORA)
    assert meta.source is Source.URL and meta.remote_url == url and meta.sha256 == sha(LORA)


def test_a_registry_row_of_a_plain_url_is_fetched_against_its_hash_and_stays_its_row(hub_env, tmp_path):
    url = hub_env.add_file("files/row.safetensors", LORA)
    folders = standalone_folders(tmp_path)
    wrong = ModelMetadata(model_id="row", name="row", source=Source.URL, type=ModelType.LORA, remote_url=url)
    wrong.sha256 = "0" * 64
    with pytest.raises(IntegrityError):
        place.fetch(wrong, folders)
    assert not list(tmp_path.rglob("*.safetensors"))

    with ModelRegistry() as registry:
        known = registry.register_model(dataclasses.replace(wrong, sha256=sha(LORA)))
        meta = place.record(place.fetch(known, folders), registry)
        assert meta.local_path == tmp_path / "loras" / "row.safetensors"
        assert registry_state(meta)["key"] == registry_state(known)["key"] and len(registry.list_models()) == 1


def test_bad_references_fail_before_anything_is_written(hub_env, tmp_path):
    with pytest.raises(InvalidReference):
        place.fetch("not a reference!", tmp_path / "x")
    with pytest.raises(InvalidReference, match="version id"):
        place.fetch("civitai:1", tmp_path / "x", revision="main")
    with pytest.raises(InvalidReference):
        place.fetch("file:///etc/passwd", tmp_path / "x", kind="loras")
    assert not (tmp_path / "x").exists()


def test_a_resolved_workflow_model_that_cannot_be_fetched_raises_its_reason(hub_env, tmp_path):
    from hubloader.workflows import Candidate, ModelReference, ModelStatus, Resolver, Status

    url = hub_env.add_file("files/wrong.safetensors", LORA)
    item = ModelStatus(
        ModelReference(name="wrong.safetensors", kind="loras", hashes={"SHA256": "0" * 64}),
        Status.RESOLVED,
        candidates=[Candidate(url, "wrong.safetensors", "url", 1.0, "test", kind="loras")],
    )
    with pytest.raises(HubloaderError):
        fetch_resolved(Resolver(standalone_folders(tmp_path)), item)
    assert item.status is Status.FAILED and not (tmp_path / "loras" / "wrong.safetensors").exists()


@pytest.mark.hf
def test_same_named_different_huggingface_files_are_placed_apart_before_the_first_byte(hub_env, tmp_path):
    sd15, sdxl, other = (safetensors_bytes(kohya_lora(), seed=s) for s in (21, 22, 23))
    hub_env.add_hf_repo("ink/styles", {"sd15/style-0.safetensors": sd15, "sdxl/style-0.safetensors": sdxl})
    hub_env.add_hf_repo("pen/styles", {"style-0.safetensors": other})
    folders = standalone_folders(tmp_path)

    first = place.fetch("ink/styles/sd15/style-0.safetensors", folders, kind="loras")
    second = place.fetch("ink/styles/sdxl/style-0.safetensors", folders, kind="loras")
    third = place.fetch("pen/styles/style-0.safetensors", folders, kind="loras")

    loras = tmp_path / "loras"
    assert first.path == loras / "style-0.safetensors" and first.path.read_bytes() == sd15
    assert second.path == loras / "ink__styles" / "sdxl" / "style-0.safetensors" and second.path.read_bytes() == sdxl
    assert third.path == loras / "pen__styles" / "style-0.safetensors" and third.path.read_bytes() == other
    assert place.fetch("ink/styles/sdxl/style-0.safetensors", folders, kind="loras").reused
    with ModelRegistry() as registry:
        meta = place.record(second, registry)
        assert meta.local_path == second.path and meta.sha256 == sha(sdxl)


def test_a_civitai_file_named_like_a_different_file_gets_its_version_id(hub_env, tmp_path):
    other = safetensors_bytes(kohya_lora(), seed=24)
    first_model, _ = hub_env.add_civitai_model("First", files=[{"name": "style.safetensors", "data": LORA}])
    second_model, version = hub_env.add_civitai_model("Second", files=[{"name": "style.safetensors", "data": other}])
    folders = standalone_folders(tmp_path)

    first = place.fetch(f"civitai:{first_model}", folders)
    sent = hub_env.bytes_sent.total()
    second = place.fetch(f"civitai:{second_model}", folders)

    assert first.path == tmp_path / "loras" / "style.safetensors" and first.path.read_bytes() == LORA
    assert second.path == tmp_path / "loras" / f"style-{version}.safetensors" and second.path.read_bytes() == other
    assert hub_env.bytes_sent.total() - sent >= len(other) and not second.reused
    assert place.fetch(f"civitai:{first_model}", folders).reused


@pytest.mark.hf
def test_huggingface_cdn_urls_expiring_mid_download_are_re_resolved_never_a_token_error(hub_env, tmp_path):
    commit = hub_env.add_hf_repo("ink/big", {"big.safetensors": ("generated", 40 * 1024 * 1024)})
    blob = hub_env.hf.repos["ink/big"].commits[commit].files["big.safetensors"].blob
    # The CDN's signed URLs live 0.3 s; throttled, dropped connections reopen after expiry.
    hub_env.faults.update(
        signed_url_ttl=0.3, bandwidth_per_connection=8 * 1024 * 1024, drop_after_bytes=3 * 1024 * 1024
    )

    placed = place.fetch("ink/big/big.safetensors", standalone_folders(tmp_path), kind="checkpoints")

    assert placed.sha256 == blob.sha256 and hashlib.sha256(placed.path.read_bytes()).hexdigest() == blob.sha256
    cdn = [r for r in hub_env.requests if r.host == "cdn"]
    assert len({r.query for r in cdn}) > 4  # several signed URLs were needed, each got afresh
