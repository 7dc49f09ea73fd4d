"""ModelRegistry with its sources: the loopback fake hub behind the real HuggingFace and CivitAI clients."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from hubloader.core.errors import RateLimited
from hubloader.core.metadata import BaseModel, ModelMetadata, ModelType, Source
from hubloader.registry import ModelRegistry
from tests.fakehub.modelfiles import kohya_lora, kohya_metadata, safetensors_bytes, sdxl_checkpoint

LORA = safetensors_bytes(
    kohya_lora("sdxl"), kohya_metadata("anime_style", "sdxl", **{"modelspec.trigger_phrase": "anime, manga style"})
)
CHECKPOINT = safetensors_bytes(sdxl_checkpoint(), seed=3)


def add_turbo(hub) -> None:
    hub.add_hf_repo(
        "stabilityai/sdxl-turbo",
        {"sd_xl_turbo_1.0_fp16.safetensors": CHECKPOINT, "README.md": b"# SDXL-Turbo\n"},
        tags=["text-to-image", "stable-diffusion-xl"],
        pipeline_tag="text-to-image",
        downloads=1000,
    )


@pytest.mark.hf
def test_register_from_huggingface_downloads_inspects_and_records(hub_env):
    add_turbo(hub_env)
    registry = ModelRegistry()
    model = registry.register_from_huggingface("stabilityai/sdxl-turbo")
    assert model.local_path.exists() and model.local_path.name == "sd_xl_turbo_1.0_fp16.safetensors"
    assert model.local_path.read_bytes() == CHECKPOINT
    assert model.source is Source.HUGGINGFACE and model.model_id == "stabilityai/sdxl-turbo"
    assert model.type is ModelType.CHECKPOINT and model.base_model is BaseModel.SDXL
    assert model.sha256 == hashlib.sha256(CHECKPOINT).hexdigest()
    assert model.extra["registry"]["managed"] is True
    # Registering again updates the same row.
    again = registry.register_from_huggingface("stabilityai/sdxl-turbo")
    assert again.extra["registry"]["key"] == model.extra["registry"]["key"]
    assert len(registry.list_models()) == 1
    assert registry.get_model(model.sha256[:10]).model_id == "stabilityai/sdxl-turbo"


@pytest.mark.hf
def test_single_lora_file_gets_header_triggers(hub_env):
    hub_env.add_hf_repo("someone/anime-lora", {"anime_style.safetensors": LORA}, tags=["lora"])
    registry = ModelRegistry()
    model = registry.register_from_huggingface("someone/anime-lora/anime_style.safetensors")
    assert model.type is ModelType.LORA and model.base_model is BaseModel.SDXL
    assert model.trigger_words == ["anime", "manga style"] and model.trigger_words_source == "modelspec"
    assert [m.name for m in registry.search("manga", local_only=True)] == [model.name]


@pytest.mark.hf
def test_cache_persistence_across_registry_instances(hub_env):
    """Seed Test Case 2: a new registry finds the model in the database, without downloading again."""
    add_turbo(hub_env)
    registry1 = ModelRegistry()
    model = registry1.register_from_huggingface("stabilityai/sdxl-turbo")
    registry1.close()

    before = len(hub_env.requests)
    registry2 = ModelRegistry()
    cached = registry2.get_model(model.model_id)
    assert cached.model_id == model.model_id
    assert cached.local_path.exists()
    assert len(hub_env.requests) == before  # nothing asked of the hub
    assert registry2.download_model(model.model_id).local_path == cached.local_path
    assert len(hub_env.requests) == before


@pytest.mark.hf
def test_unified_search_merges_local_and_remote_and_survives_a_failing_source(hub_env):
    add_turbo(hub_env)
    hub_env.add_hf_repo("someone/anime-lora", {"anime_style.safetensors": LORA}, tags=["lora", "anime"])
    registry = ModelRegistry()
    local = registry.register_from_huggingface("someone/anime-lora")
    registry.register_model(ModelMetadata(model_id="civitai:1@1", name="anime lineart", source=Source.CIVITAI))
    # CivitAI answers 429 to everything: its results are missing, the search still answers.
    hub_env.faults.update(rate_limit=1000, retry_after=0, path_prefix="/api/v1")

    results = registry.search("anime", sources=[Source.HUGGINGFACE, Source.CIVITAI])
    assert any("civitai" in w for w in results.warnings)
    keys = [(m.source, m.model_id) for m in results]
    assert len(keys) == len(set(keys))  # the HF repo registered locally is not listed twice
    assert keys[0][0] in (Source.HUGGINGFACE, Source.CIVITAI) and results[0].extra["where"] in ("local", "remote")
    assert (Source.HUGGINGFACE, "someone/anime-lora") in keys and (Source.CIVITAI, "civitai:1@1") in keys
    by_id = {m.model_id: m for m in results}
    assert by_id["someone/anime-lora"].local_path == local.local_path
    assert by_id["someone/anime-lora"].extra["where"] == "local"


def test_lru_eviction_while_downloading(hub_env):
    """Seed 14.1.4.1 with 10 downloads of 400 KiB under a 1 MiB limit (the seed's GB scaled down)."""
    registry = ModelRegistry()
    size = 400 * 1024
    for i in range(10):
        url = hub_env.add_file(f"/files/model_{i}.safetensors", size=size, seed=i)
        registry.register_model(
            ModelMetadata(model_id=f"model_{i}", name=f"model_{i}", source=Source.URL, remote_url=url)
        )
    limit_gb = 1024 * 1024 / 1024**3
    registry.set_cache_limit(max_size_gb=limit_gb)

    for i in range(10):
        registry.download_model(f"model_{i}")
    # Downloading over the limit deletes nothing; a cleanup (down to the limit by default) does.
    assert len(registry.list_cached_models()) == 10
    registry.cleanup_cache()

    cached = registry.list_cached_models()
    assert sum(m.size_bytes for m in cached) < limit_gb * 1024**3
    assert [m.name for m in cached] == ["model_8", "model_9"]  # the least recently used went first
    assert all(m.local_path.exists() for m in cached)
    # An evicted model comes back on demand.
    assert registry.download_model("model_0").local_path.exists()


def add_anime_lora(hub) -> tuple[int, int]:
    return hub.add_civitai_model(
        "anime_style_v2",
        type="LORA",
        base_model="SDXL 1.0",
        files=[{"name": "anime_style_v2.safetensors", "data": LORA}],
        trained_words=["anime", "manga style"],
        settings={"strength": 0.7},
        tags=["anime", "style"],
    )


def test_register_from_civitai_downloads_and_merges(hub_env):
    model_id, version_id = add_anime_lora(hub_env)
    registry = ModelRegistry()
    lora = registry.register_from_civitai(model_id=model_id)
    assert lora.local_path.exists() and lora.local_path.read_bytes() == LORA
    assert lora.model_id == f"civitai:{model_id}@{version_id}"
    assert lora.type is ModelType.LORA and lora.base_model is BaseModel.SDXL
    assert lora.trigger_words == ["anime", "manga style"] and lora.trigger_words_source == "civitai"
    assert lora.recommended_weight == 0.7
    assert lora.sha256 == hashlib.sha256(LORA).hexdigest()
    sidecar = json.loads(lora.local_path.with_suffix(".json").read_text())
    assert sidecar["activation text"] == "anime, manga style" and sidecar["preferred weight"] == 0.7
    assert lora.extra["registry"]["sidecar_path"] == str(lora.local_path.with_suffix(".json"))
    # Registering twice (by number, then by the id string a search returns) updates one row.
    registry.register_from_civitai(lora.model_id)
    assert len(registry.list_models()) == 1

    # AC 3: the model by its name, with trigger words and weight.
    model = registry.get_model("anime_style_v2")
    assert model.trigger_words == ["anime", "manga style"]
    assert model.recommended_weight == 0.7


@pytest.mark.hf
def test_unified_search_returns_both_sources(hub_env):
    """Seed 14.1.3.3."""
    hub_env.add_hf_repo("someone/anime-lora", {"anime_style.safetensors": LORA}, tags=["lora", "anime"])
    add_anime_lora(hub_env)
    registry = ModelRegistry()
    results = registry.search(query="anime", sources=[Source.HUGGINGFACE, Source.CIVITAI])
    assert len(results) > 0 and results.warnings == []
    assert any(r.source == Source.HUGGINGFACE for r in results)
    assert any(r.source == Source.CIVITAI for r in results)
    assert all(r.extra["where"] == "remote" for r in results)
    # Once one is registered, it comes first, from the local index, and only once.
    lora = registry.register_from_civitai(next(r for r in results if r.name == "anime_style_v2").model_id)
    again = registry.search(query="anime", sources=[Source.HUGGINGFACE, Source.CIVITAI], model_type=ModelType.LORA)
    assert again[0].model_id == lora.model_id and again[0].extra["where"] == "local"
    assert [r.model_id for r in again].count(lora.model_id) == 1


def test_remote_only_search_asks_the_hubs_alone_and_keeps_each_failure(hub_env):
    add_anime_lora(hub_env)
    registry = ModelRegistry()
    registry.register_model(ModelMetadata(model_id="civitai:9@9", name="anime at home", source=Source.CIVITAI))
    remote = registry.search("anime", sources=[Source.CIVITAI], remote_only=True)
    names = [m.name for m in remote]
    assert "anime_style_v2" in names and "anime at home" not in names  # the local row is not listed
    assert {m.extra["where"] for m in remote} == {"remote"}
    assert "anime at home" in [m.name for m in registry.search("anime", sources=[Source.CIVITAI])]
    hub_env.faults.update(rate_limit=1000, retry_after=0, path_prefix="/api/v1")
    failed = registry.search("anime", sources=[Source.CIVITAI], remote_only=True)
    assert list(failed) == [] and isinstance(failed.failures[Source.CIVITAI], RateLimited)
    assert failed.warnings == [f"civitai search failed: {failed.failures[Source.CIVITAI]}"]


@pytest.mark.hf
def test_complete_workflow(hub_env):
    """Seed Test Case 1."""
    add_turbo(hub_env)
    add_anime_lora(hub_env)
    # 1. Initialise
    registry = ModelRegistry()
    # 2. Search HuggingFace
    hf_models = registry.hf_service.search_models("sdxl-turbo")
    assert len(hf_models) > 0
    # 3. Download the base model
    model = registry.register_from_huggingface(hf_models[0].model_id)
    assert model.local_path.exists()
    # 4. Compatible LoRAs on CivitAI
    loras = registry.civitai_service.search_models(base_model=BaseModel.SDXL, type=ModelType.LORA)
    # 5. Download a LoRA
    lora = registry.register_from_civitai(loras[0].model_id)
    assert lora.local_path.exists()
    # 6. Both in the registry
    all_models = registry.list_models()
    assert len(all_models) >= 2


def test_scan_then_enrich_finds_the_file_on_civitai(hub_env, tmp_path):
    model_id, version_id = add_anime_lora(hub_env)
    library = tmp_path / "library" / "loras"
    library.mkdir(parents=True)
    (library / "my_copy.safetensors").write_bytes(LORA)
    registry = ModelRegistry()
    report = registry.scan([library])
    assert [m.name for m in report.models] == ["my_copy"]
    scanned = registry.get_model("my_copy")
    assert scanned.source is Source.LOCAL and scanned.type is ModelType.LORA and scanned.sha256 == ""

    assert registry.scan([library]).unchanged == [library / "my_copy.safetensors"]  # incremental: not reopened

    result = registry.enrich()
    assert result.hashed == 1 and result.matched == 1
    found = registry.get_model(hashlib.sha256(LORA).hexdigest())
    assert found.model_id == f"civitai:{model_id}@{version_id}" and found.local_path == library / "my_copy.safetensors"
    assert [m.model_id for m in registry.list_models()] == [found.model_id]  # the scan's row was absorbed
    assert registry.enrich().hashed == 0  # nothing hashed twice


@pytest.mark.hf
def test_evicting_a_huggingface_model_frees_its_blob(hub_env):
    add_turbo(hub_env)
    registry = ModelRegistry()
    model = registry.register_from_huggingface("stabilityai/sdxl-turbo")
    assert model.local_path.parent.name == "checkpoints"  # linked into the host's folder for its type
    (blob,) = Path(os.environ["HF_HOME"]).rglob("models--stabilityai--sdxl-turbo/blobs/*")
    assert os.path.samefile(blob, model.local_path)  # one copy on disk: the folder entry links the cache's blob
    assert [m.model_id for m in registry.set_cache_limit(max_size_gb=0.0).deleted_models] == ["stabilityai/sdxl-turbo"]
    assert blob.exists()  # a limit alone deletes nothing
    report = registry.cleanup_cache()
    assert [m.model_id for m in report.deleted_models] == ["stabilityai/sdxl-turbo"]
    assert not blob.exists() and not model.local_path.exists()
    assert registry.list_cached_models() == []


@pytest.mark.hf
def test_a_repo_downloaded_by_name_is_listed_and_deleted_by_its_repo_id(hub_env):
    add_turbo(hub_env)
    registry = ModelRegistry()
    model = registry.download_model("stabilityai/sdxl-turbo")
    (blob,) = Path(os.environ["HF_HOME"]).rglob("models--stabilityai--sdxl-turbo/blobs/*")
    assert [m.model_id for m in registry.list_cached_models()] == ["stabilityai/sdxl-turbo"]  # as scan_cache_dir
    assert registry.delete_cached_model("stabilityai/sdxl-turbo") is True
    assert not blob.exists() and not model.local_path.exists()
    assert registry.list_cached_models() == []
    assert registry.get_model("stabilityai/sdxl-turbo").local_path is None  # still known, without a copy
    assert registry.delete_cached_model("stabilityai/sdxl-turbo") is False


@pytest.mark.hf
def test_a_cleanup_never_touches_hf_cache_entries_other_tools_fetched(hub_env):
    from hubloader.sources.huggingface import HuggingFaceHubService

    add_turbo(hub_env)
    hub_env.add_hf_repo("someone/other", {"other.safetensors": CHECKPOINT})
    theirs = HuggingFaceHubService().download_model("someone/other/other.safetensors")  # not through the registry
    registry = ModelRegistry()
    registry.download_model("stabilityai/sdxl-turbo")
    report = registry.cleanup_cache(max_size_gb=0.0)
    assert [m.model_id for m in report.deleted_models] == ["stabilityai/sdxl-turbo"]
    assert theirs.is_file() and Path(os.path.realpath(theirs)).is_file()
