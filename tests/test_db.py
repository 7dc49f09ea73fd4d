"""The SQLite layer: migrations from the seed's first schema, reopen cost, and two writers at once."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from hubloader.core.errors import ConfigError
from hubloader.core.metadata import ModelType, Source
from hubloader.library import database as db
from hubloader.registry import ModelRegistry

ROOT = Path(__file__).resolve().parents[1]
SHA = "ab" * 32

# The seed document's schema (task 14.1.3.1) as a first-generation tool would have created it.
SEED_SCHEMA = """
CREATE TABLE models (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, source TEXT NOT NULL, type TEXT NOT NULL,
    base_model TEXT NOT NULL, version TEXT, format TEXT NOT NULL, size_bytes INTEGER, sha256 TEXT,
    trigger_words TEXT, tags TEXT, description TEXT, download_count INTEGER, rating REAL,
    recommended_weight REAL, local_path TEXT, remote_url TEXT, created_at TEXT, updated_at TEXT
);
CREATE INDEX idx_source ON models(source);
CREATE INDEX idx_type ON models(type);
CREATE INDEX idx_base_model ON models(base_model);
CREATE INDEX idx_tags ON models(tags);
"""


def make_seed_database(path: Path, local_file: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(SEED_SCHEMA)
    rows = [
        ("anime_style_v2", "anime_style_v2", "civitai", "lora", "sdxl", "v2", "safetensors", 1234, SHA.upper(),
         json.dumps(["anime", "manga style"]), json.dumps(["anime", "style"]), "Anime look.", 5000, 4.8, 0.7,
         str(local_file), "https://civitai.com/models/1", "2024-01-01T00:00:00+00:00", "2024-01-02T00:00:00+00:00"),
        ("stabilityai/sdxl-turbo", "sdxl-turbo", "huggingface", "checkpoint", "sdxl", "main", "diffusers", None, None,
         "[]", json.dumps(["text-to-image"]), None, 100, None, None, None, None, None, None),
    ]  # fmt: skip
    conn.executemany(f"INSERT INTO models VALUES ({', '.join('?' * 19)})", rows)
    conn.commit()
    conn.close()


def test_seed_database_upgrades_in_place_without_loss(tmp_path):
    local_file = tmp_path / "anime_style_v2.safetensors"
    local_file.write_bytes(b"weights")
    path = tmp_path / "old.db"
    make_seed_database(path, local_file)

    with ModelRegistry(path) as registry:
        assert db.schema_version(registry.db._conn) == db.SCHEMA_VERSION
        anime = registry.get_model("anime_style_v2")
        assert anime.trigger_words == ["anime", "manga style"]
        assert anime.recommended_weight == 0.7
        assert anime.rating == 4.8 and anime.download_count == 5000
        assert anime.local_path == local_file
        assert anime.sha256 == SHA  # normalised to lower case on the way up
        # Rows of the old schema gained the new lookups: by any hash, and full-text search.
        assert registry.get_model(SHA[:10]).name == "anime_style_v2"
        assert registry.get_model(SHA.upper()).name == "anime_style_v2"
        assert [m.name for m in registry.search("manga", local_only=True)] == ["anime_style_v2"]
        turbo = registry.get_model("stabilityai/sdxl-turbo")
        assert turbo.source is Source.HUGGINGFACE and turbo.description == "" and turbo.local_path is None
        assert len(registry.list_models()) == 2
        assert {m.name for m in registry.list_models(model_type=ModelType.LORA)} == {"anime_style_v2"}

    conn = sqlite3.connect(path)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"idx_source", "idx_type", "idx_base_model", "idx_tags"} <= indexes  # the seed's floor stays
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_seed_database_with_version_number_one_upgrades_too(tmp_path):
    path = tmp_path / "v1.db"
    conn = db.connect(path)
    with db.transaction(conn):
        for statement in db._statements(db.MIGRATIONS[0]):
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO models (id, name, source, type, base_model, format) VALUES ('x', 'X', 'local', 'vae', 'sd15', 'ckpt')"
        )
    assert db.migrate(conn) == db.SCHEMA_VERSION
    assert conn.execute("SELECT model_id, status, use_count FROM models").fetchall() == [("x", "ok", 0)]


def test_migration_failure_rolls_back_whole(tmp_path, monkeypatch):
    path = tmp_path / "broken.db"
    conn = db.connect(path)
    monkeypatch.setattr(db, "MIGRATIONS", (*db.MIGRATIONS, "CREATE TABLE models (oops INTEGER);"))
    monkeypatch.setattr(db, "SCHEMA_VERSION", len(db.MIGRATIONS))
    with pytest.raises(ConfigError, match=r"schema \d+ failed.*Nothing was changed"):
        db.migrate(conn)
    # Nothing of the earlier steps stayed behind: the file is still an empty version-0 database.
    assert db.schema_version(conn) == 0
    assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def test_database_from_a_newer_hubloader_is_refused(tmp_path):
    path = tmp_path / "future.db"
    ModelRegistry(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {db.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(ConfigError, match="newer Hubloader"):
        ModelRegistry(path)


def test_reopen_does_not_migrate_again(tmp_path):
    path = tmp_path / "r.db"
    ModelRegistry(path).close()
    conn = db.connect(path)
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    db.migrate(conn)
    assert seen == ["PRAGMA user_version"]


def test_hash_cache_is_keyed_by_size_and_mtime(tmp_path):
    database = db.ModelDatabase(tmp_path / "h.db")
    f = tmp_path / "a.safetensors"
    f.write_bytes(b"x" * 10)
    size, mtime = db.file_signature(f)
    assert database.cached_file_facts(f, size, mtime) is None
    database.cache_file_facts(f, size, mtime, hashes={"SHA256": SHA}, info={"kind": "lora"})
    database.cache_file_facts(f, size, mtime, hashes={"BLAKE3": "cd" * 32})  # merges, keeps SHA256 and info
    facts = database.cached_file_facts(f, size, mtime)
    assert facts == {"hashes": {"SHA256": SHA, "BLAKE3": "cd" * 32}, "info": {"kind": "lora"}}
    assert database.cached_file_facts(f, size + 1, mtime) is None
    assert database.cached_file_facts(f, size, mtime + 1) is None


WRITER = """
import sys
from hubloader.registry import ModelRegistry
from hubloader.core.metadata import ModelMetadata, Source
registry = ModelRegistry(sys.argv[1])
tag = sys.argv[2]
sys.stdin.readline()  # start together
for i in range(int(sys.argv[3])):
    registry.register_model(ModelMetadata(model_id=f"{tag}-{i}", name=f"{tag} model {i}", source=Source.URL,
                                          sha256=f"{hash((tag, i)) & (2**256 - 1):064x}"))
    registry.mark_used(f"url:{tag}-{i}")
print("done", flush=True)
"""


def test_two_processes_write_at_once_and_lose_nothing(tmp_path):
    path = tmp_path / "shared.db"
    ModelRegistry(path).close()
    count = 150
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), tag, str(count)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    outputs = [p.communicate("go\n", timeout=100) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "locked" not in err and out.strip() == "done"
    with ModelRegistry(path) as registry:
        models = registry.list_models()
        assert len(models) == 2 * count
        assert all(registry_use(m) == 1 for m in models)
        assert len(registry.search("model", local_only=True, limit=1000)) == 2 * count


def registry_use(meta):
    return meta.extra["registry"]["use_count"]


def test_a_locked_index_is_an_index_error_naming_the_file(tmp_path, monkeypatch):
    from hubloader.core.errors import IndexUnavailable

    path = tmp_path / "models.db"
    db.ModelDatabase(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")  # another process writing for longer than the busy timeout
    monkeypatch.setattr(db, "BUSY_TIMEOUT_S", 0.2)
    try:
        with pytest.raises(IndexUnavailable, match=r"The model index .*models\.db cannot be used: database is locked"):
            db.ModelDatabase(path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    db.ModelDatabase(path).close()  # nothing was lost: it opens once the other writer is done


def test_listed_rows_read_their_json_and_hashes_in_one_query_even_when_broken(tmp_path: Path) -> None:
    """A listing has SQLite build one JSON document per row (its JSON columns and its hashes) and decodes them all
    at once; a column that is not valid JSON (by hand, an old version) reads as empty, as it always did, and empty
    values are fresh objects, never one list shared by the rows."""
    from hubloader.core.metadata import ModelMetadata, Source
    from hubloader.library import database as d

    db = d.ModelDatabase(tmp_path / "models.db")
    with db.write() as conn:
        for i in range(3):
            meta = ModelMetadata(model_id=f"civitai:{i}@{i}", name=f"m{i}", source=Source.CIVITAI, tags=["t", "u,v"])
            meta.sha256, meta.trigger_words, meta.extra = f"{i:064x}", [f"w{i}"], {"k": [1, {"x": "y"}]}
            db.upsert(conn, meta.model_id, meta, managed=False, status="ok")
        conn.execute(
            "UPDATE models SET trigger_words = 'not json', tags = '\"a\", \"b\"', extra = '[1]', files = '' "
            "WHERE id = 'civitai:1@1'"
        )
        conn.execute("UPDATE models SET trigger_words = '[]', tags = NULL WHERE id = 'civitai:2@2'")
    pks = [pk for (pk,) in db.query("SELECT pk FROM models ORDER BY id")]
    first, broken, empty = db.models_by_pk(pks)
    with db.write() as conn:  # a value that spoils a joined document ("1],[2") reads as empty, the others as stored
        conn.execute("UPDATE models SET trigger_words = '1],[2', training_tags = '  ' WHERE id = 'civitai:2@2'")
    joined = db.models_by_pk(pks)
    assert joined[0].trigger_words == ["w0"] and joined[2].trigger_words == [] and joined[2].training_tags == []
    assert joined[1].tags == [] and joined[0].tags == ["t", "u,v"]
    assert first.trigger_words == ["w0"] and first.tags == ["t", "u,v"] and first.extra["k"] == [1, {"x": "y"}]
    assert first.hashes == {"SHA256": f"{0:064x}", "AutoV2": f"{0:064x}"[:10]}
    assert broken.trigger_words == [] and broken.tags == [] and broken.files == []
    assert set(broken.extra) == {"registry"} and broken.hashes["SHA256"] == f"{1:064x}"
    assert empty.trigger_words == [] and empty.tags == [] and empty.trigger_words is not broken.trigger_words
    assert [m.name for m in db.models_by_pk(list(reversed(pks)))] == ["m2", "m1", "m0"]
    db.close()
