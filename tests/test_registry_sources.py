"""ModelRegistry with its sources: the loopback fake hub behind the real HuggingFace and CivitAI clients."""

from __future__ import annotations

import hashlib

import pytest

from hubloader.registry import ModelRegistry
from hubloader.types import BaseModel, ModelMetadata, ModelType, Source
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

    cached = registry.list_cached_models()
    assert sum(m.size_bytes for m in cached) < limit_gb * 1024**3
    assert [m.name for m in cached] == ["model_8", "model_9"]  # the least recently used went first
    assert all(m.local_path.exists() for m in cached)
    # An evicted model comes back on demand.
    assert registry.download_model("model_0").local_path.exists()
