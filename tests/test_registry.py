"""ModelRegistry on a real SQLite file and real files: CRUD, lookups, local search, consistency, cache policy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hubloader.core import settings as config
from hubloader.core.errors import HubloaderError, NotFound
from hubloader.core.metadata import BaseModel, ModelMetadata, ModelType, Source
from hubloader.registry import ModelRegistry, SearchResults

SHA = "0123456789abcdef" * 4


def meta(model_id: str, **kw) -> ModelMetadata:
    kw.setdefault("name", model_id)
    kw.setdefault("source", Source.CIVITAI)
    return ModelMetadata(model_id=model_id, **kw)


def state(m: ModelMetadata) -> dict:
    return m.extra["registry"]


def local_file(root: Path, name: str, size: int = 1000) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


# --- 14.1.3.2: CRUD --------------------------------------------------------------------------


def test_registry_crud():
    registry = ModelRegistry()  # HUBLOADER_HOME is isolated per test by conftest
    assert registry.db_path == config.hubloader_home() / "models.db"

    metadata = meta("civitai:12345@67890", name="anime_style_v2", type=ModelType.LORA, base_model=BaseModel.SDXL)
    registry.register_model(metadata)

    retrieved = registry.get_model(metadata.model_id)
    assert retrieved.model_id == metadata.model_id
    assert retrieved.type is ModelType.LORA and retrieved.base_model is BaseModel.SDXL

    metadata.rating = 4.5
    registry.update_model(metadata)
    assert registry.get_model(metadata.model_id).rating == 4.5

    assert registry.delete_model(metadata.model_id) is True
    with pytest.raises(NotFound, match="civitai:12345@67890"):
        registry.get_model(metadata.model_id)
    assert registry.find_model(metadata.model_id) is None
    assert registry.delete_model(metadata.model_id) is False


def test_update_of_unknown_model_is_refused():
    with pytest.raises(NotFound, match="register"):
        ModelRegistry().update_model(meta("civitai:1@2"))


def test_every_field_round_trips(tmp_path):
    registry = ModelRegistry()
    path = local_file(tmp_path, "loras/a.safetensors")
    original = meta(
        "civitai:1@2",
        name="Anime Style",
        type=ModelType.LORA,
        base_model=BaseModel.PONY,
        version="v2",
        size_bytes=1000,
        sha256=SHA.upper(),
        trigger_words=["anime", "manga style"],
        tags=["style"],
        description="Drawn look.",
        download_count=7,
        rating=4.5,
        recommended_weight=0.7,
        local_path=path,
        remote_url="https://civitai.com/models/1",
        version_id="2",
        hashes={"autov3": "ABCDEF012345", "BLAKE3": "ee" * 32},
        preview_urls=["https://img/1.jpeg"],
        air="urn:air:pony:lora:civitai:1@2",
        author="someone",
        like_count=3,
        nsfw=True,
        training_tags=["1girl"],
        trigger_words_source="civitai",
        recommended_weight_source="civitai.settings",
        extra={"frozen": {"id": 2}},
    )
    got = registry.register_model(original)
    for name in ("name", "type", "base_model", "version", "size_bytes", "trigger_words", "tags", "description"):
        assert getattr(got, name) == getattr(original, name), name
    for name in ("download_count", "rating", "recommended_weight", "local_path", "remote_url", "version_id"):
        assert getattr(got, name) == getattr(original, name), name
    for name in ("preview_urls", "air", "author", "like_count", "nsfw", "training_tags", "trigger_words_source"):
        assert getattr(got, name) == getattr(original, name), name
    assert got.sha256 == SHA
    assert got.hashes == {"SHA256": SHA, "AutoV2": SHA[:10], "AutoV3": "abcdef012345", "BLAKE3": "ee" * 32}
    assert got.extra["frozen"] == {"id": 2}
    assert state(got)["key"] == "civitai:1@2" and state(got)["status"] == "ok"


def test_registering_twice_updates_never_duplicates():
    registry = ModelRegistry()
    registry.register_model(meta("civitai:1@2", name="first", download_count=1))
    registry.register_model(meta("civitai:1@2", name="second", download_count=2))
    models = registry.list_models()
    assert [(m.name, m.download_count) for m in models] == [("second", 2)]


def test_user_set_triggers_and_weight_survive_a_re_registration():
    registry = ModelRegistry()
    registry.register_model(meta("civitai:1@2", trigger_words=["from civitai"], trigger_words_source="civitai"))
    edited = registry.get_model("civitai:1@2")
    edited.trigger_words, edited.trigger_words_source = ["my words"], "user"
    edited.recommended_weight, edited.recommended_weight_source = 0.55, "user"
    registry.update_model(edited)
    registry.register_model(
        meta("civitai:1@2", trigger_words=["newer"], trigger_words_source="civitai", recommended_weight=1.0)
    )
    again = registry.get_model("civitai:1@2")
    assert (again.trigger_words, again.trigger_words_source) == (["my words"], "user")
    assert (again.recommended_weight, again.recommended_weight_source) == (0.55, "user")


# --- lookups -----------------------------------------------------------------------------------


def test_get_model_by_name_id_hash_and_air():
    registry = ModelRegistry()
    registry.register_model(
        meta(
            "civitai:12345@67890",
            name="anime_style_v2",
            sha256=SHA,
            hashes={"AutoV3": "A1B2C3D4E5F6", "BLAKE3": "ff" * 32, "CRC32": "0badcafe"},
            air="urn:air:sdxl:lora:civitai:12345@67890",
            trigger_words=["anime", "manga style"],
            recommended_weight=0.7,
        )
    )
    registry.register_model(meta("civitai:9@9", name="other"))
    for ref in (
        "anime_style_v2",
        "ANIME_STYLE_V2",
        "civitai:12345@67890",
        SHA,
        SHA.upper(),
        SHA[:10],
        "sha256:" + SHA,
        "a1b2c3d4e5f6",
        "ff" * 32,
        "0BADCAFE",
        "urn:air:sdxl:lora:civitai:12345@67890",
    ):
        model = registry.get_model(ref)
        assert model.name == "anime_style_v2", ref
    model = registry.get_model("anime_style_v2")
    assert model.trigger_words == ["anime", "manga style"]
    assert model.recommended_weight == 0.7
    with pytest.raises(NotFound, match="search"):
        registry.get_model("deadbeef00")


def test_same_model_id_prefers_the_row_with_a_local_file(tmp_path):
    registry = ModelRegistry()
    path = local_file(tmp_path, "x.safetensors")
    registry.register_model(meta("x", source=Source.URL, remote_url="http://a/x"))
    registry.register_model(meta("x", source=Source.HUGGINGFACE, local_path=path))
    assert registry.get_model("x").local_path == path


def test_sourced_registration_absorbs_the_scan_row_of_the_same_file(tmp_path):
    registry = ModelRegistry()
    path = local_file(tmp_path, "lora.safetensors")
    scanned = registry.register_model(meta("lora", source=Source.LOCAL, local_path=path))
    registry.pin(scanned)
    registry.mark_used(scanned)
    sourced = registry.register_model(meta("civitai:5@6", name="Lora", local_path=path))
    assert [state(m)["key"] for m in registry.list_models()] == ["civitai:5@6"]
    assert state(sourced)["pinned"] and state(sourced)["use_count"] == 1


# --- local search ------------------------------------------------------------------------------


def test_local_search_covers_name_tags_triggers_description_and_stays_in_sync():
    registry = ModelRegistry()
    registry.register_model(meta("civitai:1@1", name="Anime Lineart", type=ModelType.LORA))
    registry.register_model(meta("civitai:2@2", name="Watercolor", tags=["painting"], type=ModelType.LORA))
    registry.register_model(meta("civitai:3@3", name="Portraits", trigger_words=["ohwx person"]))
    registry.register_model(meta("civitai:4@4", name="Misc", description="A café-style look", source=Source.URL))

    def names(query: str, **kw) -> list[str]:
        return [m.name for m in registry.search(query, local_only=True, **kw)]

    assert names("anime") == ["Anime Lineart"]
    assert names("anim") == ["Anime Lineart"]  # prefix
    assert names("painting") == ["Watercolor"]
    assert names("ohwx") == ["Portraits"]
    assert names("cafe") == ["Misc"]  # diacritics folded
    assert names('"quotes" AND (weird') == []  # user text is never FTS syntax
    assert names("anime", model_type=ModelType.CHECKPOINT) == []
    assert names("painting", sources=[Source.HUGGINGFACE]) == []
    assert names("painting", sources=[Source.HUGGINGFACE, Source.CIVITAI]) == ["Watercolor"]
    assert names("", sources=[]) == []

    renamed = registry.get_model("civitai:2@2")
    renamed.name, renamed.tags = "Gouache", ["gouache"]
    registry.update_model(renamed)
    assert names("painting") == [] and names("gouache") == ["Gouache"]
    registry.delete_model("civitai:1@1")
    assert names("anime") == []

    results = registry.search(local_only=True)
    assert isinstance(results, SearchResults) and results.warnings == []
    assert len(results) == 3 and all(m.extra["where"] == "remote" for m in results)


def test_ranking_prefers_name_then_triggers_then_tags_and_common_words_list_newest(monkeypatch):
    from hubloader.library import index as index_module

    registry = ModelRegistry()
    registry.register_model(meta("civitai:1@1", name="one", tags=["ink"], download_count=5))
    registry.register_model(meta("civitai:2@2", name="Ink two"))
    registry.register_model(meta("civitai:3@3", name="three", trigger_words=["ink"]))
    registry.register_model(meta("civitai:4@4", name="four", tags=["ink"], download_count=9))
    ranked = [m.model_id for m in registry.search("ink", local_only=True, limit=3)]
    assert ranked == ["civitai:2@2", "civitai:3@3", "civitai:4@4"]  # name, trigger, then the most downloaded tag
    monkeypatch.setattr(index_module, "RANK_CAP", 3)
    newest = [m.model_id for m in registry.search("ink", local_only=True, limit=3)]
    assert newest == ["civitai:4@4", "civitai:3@3", "civitai:2@2"]


def test_background_enrichment_hashes_files_once(tmp_path):
    registry = ModelRegistry()
    path = local_file(tmp_path, "lib/a.safetensors", 5000)
    registry.register_model(meta("a", source=Source.LOCAL, local_path=path))
    registry.start_enrichment(lookup_civitai=False).join(timeout=60)
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert registry.get_model(digest).local_path == path
    assert registry.get_model(digest[:10]).local_path == path
    assert registry.enrich(lookup_civitai=False).hashed == 0


def test_filtered_search_uses_type_base_and_source():
    registry = ModelRegistry()
    registry.register_model(meta("civitai:1@1", name="Ink", type=ModelType.LORA, base_model=BaseModel.SDXL))
    registry.register_model(meta("civitai:2@2", name="Ink loha", type=ModelType.LYCORIS, base_model=BaseModel.SDXL))
    registry.register_model(meta("civitai:3@3", name="Ink old", type=ModelType.LORA, base_model=BaseModel.SD15))
    registry.register_model(meta("ink/te", name="Ink te", type=ModelType.TEXT_ENCODER, source=Source.HUGGINGFACE))

    def names(**kw) -> set[str]:
        return {m.name for m in registry.search("ink", local_only=True, **kw)}

    assert names(model_type=ModelType.LORA) == {"Ink", "Ink loha", "Ink old"}  # LyCORIS counts as LoRA
    assert names(model_type=ModelType.LORA, base_model=BaseModel.SDXL) == {"Ink", "Ink loha"}
    assert names(model_type=ModelType.TEXT_ENCODER) == {"Ink te"}
    assert names(sources=[Source.HUGGINGFACE]) == {"Ink te"}
    changed = registry.get_model("civitai:3@3")
    changed.base_model = BaseModel.SDXL
    registry.update_model(changed)  # the filter words follow the row
    assert names(model_type=ModelType.LORA, base_model=BaseModel.SDXL) == {"Ink", "Ink loha", "Ink old"}


def test_search_ranks_names_above_descriptions():
    registry = ModelRegistry()
    registry.register_model(meta("civitai:1@1", name="Generic", description="not really anime at all"))
    registry.register_model(meta("civitai:2@2", name="Anime"))
    assert [m.name for m in registry.search("anime", local_only=True)] == ["Anime", "Generic"]


# --- consistency with the disk -----------------------------------------------------------------


def test_file_deleted_outside_is_marked_missing_and_comes_back(tmp_path):
    registry = ModelRegistry()
    path = local_file(tmp_path, "m.safetensors")
    registry.register_model(meta("civitai:1@1", local_path=path), managed=True)
    assert [m.local_path for m in registry.list_cached_models()] == [path]

    moved = path.rename(tmp_path / "elsewhere.safetensors")
    assert registry.list_cached_models() == []
    gone = registry.get_model("civitai:1@1")
    assert gone.local_path is None and state(gone)["status"] == "missing"
    assert registry.list_models()[0].local_path is None

    moved.rename(path)
    assert [m.local_path for m in registry.list_cached_models()] == [path]
    assert all(m.local_path.exists() for m in registry.list_cached_models())


def test_registering_a_missing_path_records_it_missing(tmp_path):
    registry = ModelRegistry()
    got = registry.register_model(meta("civitai:1@1", local_path=tmp_path / "nope.safetensors"))
    assert got.local_path is None and state(got)["status"] == "missing"


# --- cache policy ------------------------------------------------------------------------------


def fill_cache(registry: ModelRegistry, root: Path, count: int, size: int = 1000) -> list[ModelMetadata]:
    models = []
    for i in range(count):
        path = local_file(root, f"m{i}.safetensors", size)
        models.append(registry.register_model(meta(f"civitai:{i}@{i}", local_path=path), managed=True))
        registry.mark_used(models[-1])
    return models


def test_cleanup_report_seed_shape():
    registry = ModelRegistry()
    report = registry.cleanup_cache(keep_recent=5, max_size_gb=10.0)
    assert report.deleted_count >= 0
    assert report.freed_space_gb >= 0.0
    assert len(report.kept_models) <= 5


def test_cleanup_keeps_the_most_recently_used(tmp_path):
    registry = ModelRegistry()
    models = fill_cache(registry, tmp_path, 8)
    registry.mark_used(models[0])  # now the most recent

    # Size-based: the downloads fit in 10 GB, so keep_recent=3 deletes nothing (it only protects).
    assert registry.cleanup_cache(keep_recent=3, max_size_gb=10.0).deleted_count == 0
    preview = registry.cleanup_cache(keep_recent=3, max_size_gb=0.0, dry_run=True)
    assert preview.dry_run and preview.deleted_count == 5
    assert all(m.local_path.exists() for m in preview.deleted_models)

    report = registry.cleanup_cache(keep_recent=3, max_size_gb=0.0)  # the 3 most recent stay whatever the size
    assert {m.model_id for m in report.kept_models} == {"civitai:0@0", "civitai:6@6", "civitai:7@7"}
    assert report.deleted_count == 5 and len(report.kept_models) <= 3
    assert report.freed_space_gb == pytest.approx(5000 / 1024**3)
    assert not any(m.local_path.exists() for m in report.deleted_models)
    assert {m.model_id for m in registry.list_cached_models()} == {m.model_id for m in report.kept_models}
    # The evicted models stay known (remote metadata), only without a local copy.
    assert len(registry.list_models()) == 8


def test_cleanup_respects_size_after_keep_recent(tmp_path):
    registry = ModelRegistry()
    fill_cache(registry, tmp_path, 4, size=4096)
    report = registry.cleanup_cache(keep_recent=2, max_size_gb=9000 / 1024**3)
    assert [m.model_id for m in report.deleted_models] == ["civitai:0@0", "civitai:1@1"]
    assert report.total_size_gb * 1024**3 == pytest.approx(8192)


def test_cache_limit_is_persisted_and_evicts_lru(tmp_path):
    registry = ModelRegistry()
    models = fill_cache(registry, tmp_path, 5, size=1024)
    report = registry.set_cache_limit(max_size_gb=3 * 1024 / 1024**3)
    # Setting a limit deletes nothing: it says what a cleanup down to it would delete.
    assert report.dry_run and [m.model_id for m in report.deleted_models] == ["civitai:0@0", "civitai:1@1"]
    assert all(m.local_path.exists() for m in models)
    assert ModelRegistry().cache_limit_gb == pytest.approx(3 * 1024 / 1024**3)  # a new instance sees it
    cleaned = registry.cleanup_cache()  # the default policy: down to the limit
    assert [m.model_id for m in cleaned.deleted_models] == ["civitai:0@0", "civitai:1@1"]
    assert sum(m.local_path.stat().st_size for m in registry.list_cached_models()) <= 3 * 1024


def test_pinned_downloading_in_use_and_user_files_are_never_evicted(tmp_path):
    registry = ModelRegistry()
    models = fill_cache(registry, tmp_path, 4)
    registry.pin(models[0])
    models[1].local_path.with_name(models[1].local_path.name + ".part").write_bytes(b"")
    users_own = local_file(tmp_path, "library/mine.safetensors")
    registry.register_model(meta("mine", source=Source.LOCAL, local_path=users_own))  # found by a scan
    with registry.using(models[2]):
        report = registry.cleanup_cache(keep_recent=0, max_size_gb=0.0)
        assert [m.model_id for m in report.deleted_models] == ["civitai:3@3"]
    assert users_own.exists()
    assert all(m.local_path.exists() for m in models[:3])
    # Once released, the model may go.
    assert [m.model_id for m in registry.cleanup_cache(keep_recent=0, max_size_gb=0.0).deleted_models] == [
        "civitai:2@2"
    ]


def test_a_file_that_will_not_go_is_kept_and_reported(tmp_path, monkeypatch):
    from hubloader.library import eviction

    registry = ModelRegistry()
    stuck, free = fill_cache(registry, tmp_path, 2)
    remove = eviction.remove_path

    def refuse_stuck(path: Path | None) -> None:
        if path == stuck.local_path:
            raise PermissionError(f"cannot delete {path}")
        remove(path)

    monkeypatch.setattr(eviction, "remove_path", refuse_stuck)
    report = registry.cleanup_cache(keep_recent=0, max_size_gb=0.0)
    assert [m.model_id for m in report.deleted_models] == [free.model_id]
    assert report.errors == [f"could not delete {stuck.local_path}"]
    assert [m.model_id for m in report.kept_models] == [stuck.model_id]
    assert registry.get_model(stuck.model_id).local_path == stuck.local_path


def test_lease_of_a_dead_process_does_not_block_eviction(tmp_path):
    registry = ModelRegistry()
    (model,) = fill_cache(registry, tmp_path, 1)
    with registry.db.write() as conn:
        conn.execute("INSERT INTO model_leases VALUES (?, ?, '2020-01-01')", (state(model)["pk"], 2**22 + 12345))
    assert registry.cleanup_cache(keep_recent=0, max_size_gb=0.0).deleted_count == 1


def test_mark_used_counts_uses():
    registry = ModelRegistry()
    registry.register_model(meta("civitai:1@1"))
    registry.mark_used("civitai:1@1")
    used = registry.touch("civitai:1@1")
    assert state(used)["use_count"] == 2 and state(used)["last_used_at"]


# --- archive -----------------------------------------------------------------------------------


def test_archive_restores_transparently_on_next_use(tmp_path):
    pytest.importorskip("zstandard")
    registry = ModelRegistry()
    path = local_file(tmp_path, "cold.safetensors", 50_000)
    data = path.read_bytes()
    registry.register_model(meta("civitai:1@1", local_path=path), managed=True)

    archived = registry.archive("civitai:1@1")
    assert not path.exists() and Path(state(archived)["archive_path"]).exists()
    assert archived.local_path is None and registry.list_cached_models() == []

    used = registry.mark_used("civitai:1@1")
    assert used.local_path == path and path.read_bytes() == data
    assert state(used)["status"] == "ok" and not Path(str(path) + ".zst").exists()


def test_pinned_model_cannot_be_archived(tmp_path):
    registry = ModelRegistry()
    path = local_file(tmp_path, "p.safetensors")
    registry.register_model(meta("civitai:1@1", local_path=path))
    registry.pin("civitai:1@1")
    with pytest.raises(HubloaderError, match="pinned"):
        registry.archive("civitai:1@1")
    assert path.exists()


def test_a_held_download_lock_protects_the_file_but_a_leftover_lock_file_does_not(tmp_path):
    from filelock import FileLock

    from hubloader.engine.download import lock_path

    registry = ModelRegistry()
    first, second = fill_cache(registry, tmp_path, 2)
    for m in (first, second):
        lock_path(m.local_path).parent.mkdir(parents=True, exist_ok=True)
        lock_path(m.local_path).write_bytes(b"")  # left behind by finished downloads
    with FileLock(str(lock_path(first.local_path))):
        report = registry.cleanup_cache(keep_recent=0, max_size_gb=0.0)
    assert [m.model_id for m in report.deleted_models] == ["civitai:1@1"]
    assert first.local_path.exists()


def test_re_registering_an_archived_model_keeps_it_archived(tmp_path):
    pytest.importorskip("zstandard")
    registry = ModelRegistry()
    path = local_file(tmp_path, "cold.safetensors", 5000)
    registry.register_model(meta("civitai:1@1", local_path=path), managed=True)
    registry.archive("civitai:1@1")
    registry.register_model(meta("civitai:1@1", local_path=path, rating=5.0))
    assert state(registry.get_model("civitai:1@1"))["status"] == "archived"
    assert registry.mark_used("civitai:1@1").local_path.exists()


def test_list_models_pages():
    registry = ModelRegistry()
    for i in range(7):
        registry.register_model(meta(f"civitai:{i}@{i}", type=ModelType.LORA))
    pages = [registry.list_models(model_type=ModelType.LORA, limit=3, offset=o) for o in (0, 3, 6)]
    ids = [m.model_id for page in pages for m in page]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert sorted(ids) == sorted(m.model_id for m in registry.list_models()) and len(set(ids)) == 7
