"""The registry database's schema, as versioned migrations: :data:`MIGRATIONS` starts with the seed
document's first schema, verbatim, and each later entry upgrades the previous one in place.

Never edit a shipped migration: append a new one. :func:`hubloader.library.database.migrate` applies
them and records the version in ``PRAGMA user_version``.
"""

from __future__ import annotations

# Migration 1 is the seed's schema exactly as specified (task 14.1.3.1), so a database made by a
# first-generation tool upgrades through the same path as ours.
_V1_SEED = """
CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    type TEXT NOT NULL,
    base_model TEXT NOT NULL,
    version TEXT,
    format TEXT NOT NULL,
    size_bytes INTEGER,
    sha256 TEXT,
    trigger_words TEXT,  -- JSON array
    tags TEXT,  -- JSON array
    description TEXT,
    download_count INTEGER,
    rating REAL,
    recommended_weight REAL,
    local_path TEXT,
    remote_url TEXT,
    created_at TEXT,
    updated_at TEXT
);
CREATE INDEX IF NOT EXISTS idx_source ON models(source);
CREATE INDEX IF NOT EXISTS idx_type ON models(type);
CREATE INDEX IF NOT EXISTS idx_base_model ON models(base_model);
CREATE INDEX IF NOT EXISTS idx_tags ON models(tags);
"""

# Rebuild with an INTEGER PRIMARY KEY: the full-text index (migration 5) points at rows by rowid,
# and only an explicit integer key survives VACUUM unchanged. `id` stays the unique row key.
# Every hash a file is known by gets its own indexed row, so any of them finds the model.
_V2_IDENTITY_AND_HASHES = """
CREATE TABLE models_v2 (
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    type TEXT NOT NULL,
    base_model TEXT NOT NULL,
    version TEXT,
    format TEXT NOT NULL,
    size_bytes INTEGER,
    sha256 TEXT,
    trigger_words TEXT,
    tags TEXT,
    description TEXT,
    download_count INTEGER,
    rating REAL,
    recommended_weight REAL,
    local_path TEXT,
    remote_url TEXT,
    created_at TEXT,
    updated_at TEXT,
    model_id TEXT NOT NULL DEFAULT '',
    version_id TEXT NOT NULL DEFAULT '',
    files TEXT NOT NULL DEFAULT '[]',
    preview_urls TEXT NOT NULL DEFAULT '[]',
    air TEXT NOT NULL DEFAULT '',
    author TEXT NOT NULL DEFAULT '',
    like_count INTEGER NOT NULL DEFAULT 0,
    nsfw INTEGER NOT NULL DEFAULT 0,
    training_tags TEXT NOT NULL DEFAULT '[]',
    trigger_words_source TEXT NOT NULL DEFAULT '',
    recommended_weight_source TEXT NOT NULL DEFAULT '',
    sidecar_path TEXT,
    preview_path TEXT,
    extra TEXT NOT NULL DEFAULT '{}'
);
INSERT INTO models_v2 (id, name, source, type, base_model, version, format, size_bytes, sha256, trigger_words,
                       tags, description, download_count, rating, recommended_weight, local_path, remote_url,
                       created_at, updated_at, model_id)
    SELECT id, name, source, type, base_model, version, format, size_bytes, lower(sha256), trigger_words,
           tags, description, download_count, rating, recommended_weight, local_path, remote_url,
           created_at, updated_at, id
    FROM models;
DROP TABLE models;
ALTER TABLE models_v2 RENAME TO models;
CREATE INDEX idx_source ON models(source);
CREATE INDEX idx_type ON models(type);
CREATE INDEX idx_base_model ON models(base_model);
CREATE INDEX idx_tags ON models(tags);
CREATE INDEX idx_models_model_id ON models(model_id);
CREATE INDEX idx_models_name ON models(name COLLATE NOCASE);
CREATE INDEX idx_models_local_path ON models(local_path) WHERE local_path IS NOT NULL;
CREATE TABLE model_hashes (
    model_pk INTEGER NOT NULL REFERENCES models(pk) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_pk, kind)
) WITHOUT ROWID;
CREATE INDEX idx_model_hashes_value ON model_hashes(value);
INSERT INTO model_hashes (model_pk, kind, value)
    SELECT pk, 'SHA256', lower(sha256) FROM models WHERE length(sha256) = 64;
INSERT INTO model_hashes (model_pk, kind, value)
    SELECT pk, 'AutoV2', substr(lower(sha256), 1, 10) FROM models WHERE length(sha256) = 64;
"""

# Cache policy state: whether Hubloader owns the file (only those may be evicted), pins, LRU
# clock, files gone missing or archived, and leases held by processes that are loading a model.
_V3_CACHE = """
ALTER TABLE models ADD COLUMN status TEXT NOT NULL DEFAULT 'ok';
ALTER TABLE models ADD COLUMN managed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE models ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE models ADD COLUMN last_used_at TEXT;
ALTER TABLE models ADD COLUMN use_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE models ADD COLUMN archive_path TEXT;
CREATE INDEX idx_models_last_used ON models(last_used_at);
CREATE TABLE model_leases (
    model_pk INTEGER NOT NULL REFERENCES models(pk) ON DELETE CASCADE,
    pid INTEGER NOT NULL,
    acquired_at TEXT NOT NULL
);
CREATE INDEX idx_model_leases_model ON model_leases(model_pk);
"""

# What the library scan learnt about a file, valid while (size, mtime_ns) are unchanged: hashes
# and header facts, so an unchanged file is never read or hashed twice.
_V4_HASH_CACHE = """
CREATE TABLE hash_cache (
    path TEXT PRIMARY KEY,
    size_bytes INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hashes TEXT NOT NULL DEFAULT '{}',
    info TEXT NOT NULL DEFAULT '{}',
    checked_at TEXT NOT NULL
);
"""

# Full-text search over what a user types: name, tags, trigger words, description. An external
# content table (no second copy of the text) kept in sync by triggers, so every writer, ours or
# a future one, keeps it right. Name and trigger words weigh most in the ranking.
_FTS_TRIGGERS = """
CREATE TRIGGER models_fts_insert AFTER INSERT ON models BEGIN
    INSERT INTO models_fts (rowid, name, tags, trigger_words, description)
    VALUES (new.pk, new.name, new.tags, new.trigger_words, new.description);
END;
CREATE TRIGGER models_fts_delete AFTER DELETE ON models BEGIN
    INSERT INTO models_fts (models_fts, rowid, name, tags, trigger_words, description)
    VALUES ('delete', old.pk, old.name, old.tags, old.trigger_words, old.description);
END;
CREATE TRIGGER models_fts_update AFTER UPDATE OF name, tags, trigger_words, description ON models BEGIN
    INSERT INTO models_fts (models_fts, rowid, name, tags, trigger_words, description)
    VALUES ('delete', old.pk, old.name, old.tags, old.trigger_words, old.description);
    INSERT INTO models_fts (rowid, name, tags, trigger_words, description)
    VALUES (new.pk, new.name, new.tags, new.trigger_words, new.description);
END;
"""

_V5_FTS = (
    """
CREATE VIRTUAL TABLE models_fts USING fts5(
    name, tags, trigger_words, description,
    content='models', content_rowid='pk', tokenize='unicode61 remove_diacritics 2', prefix='2 3'
);
"""
    + _FTS_TRIGGERS
    + """
INSERT INTO models_fts (models_fts) VALUES ('rebuild');
INSERT INTO models_fts (models_fts, rank) VALUES ('rank', 'bm25(10.0, 4.0, 8.0, 1.0)');
"""
)

# Listing pages ("newest LoRAs") walk these instead of sorting every matching row.
_V6_LISTING_INDEXES = """
CREATE INDEX idx_models_updated ON models(updated_at);
CREATE INDEX idx_models_type_updated ON models(type, updated_at);
CREATE INDEX idx_models_source_updated ON models(source, updated_at);
"""

# Filters on type, base and source answered from one covering index, without reading rows.
_V7_FILTER_INDEX = """
CREATE INDEX idx_models_filters ON models(type, base_model, source);
"""

# Measured on 100,000 rows: with (source, updated_at) present, SQLite walked all of a source's rows
# to avoid a sort. One covering index for type/base/source that also holds updated_at answers
# filtered listings from the index alone, already in order for the exact-match case.
_V8_COVERING_FILTERS = """
DROP INDEX idx_models_source_updated;
DROP INDEX idx_models_type_updated;
DROP INDEX idx_models_filters;
CREATE INDEX idx_models_filtered_updated ON models(type, base_model, source, updated_at);
"""

# Prefix indexes up to 8 characters: a search typed ahead ("anim") reads one list instead of merging
# the lists of every word it starts (measured 5-7 ms -> 0.1 ms for a word in most of 100,000 rows).
_V9_FTS_PREFIXES = (
    """
DROP TRIGGER models_fts_insert;
DROP TRIGGER models_fts_delete;
DROP TRIGGER models_fts_update;
DROP TABLE models_fts;
CREATE VIRTUAL TABLE models_fts USING fts5(
    name, tags, trigger_words, description,
    content='models', content_rowid='pk', tokenize='unicode61 remove_diacritics 2', prefix='2 3 4 5 6 7 8'
);
"""
    + _FTS_TRIGGERS
    + """
INSERT INTO models_fts (models_fts) VALUES ('rebuild');
"""
)

# Type, base and source as words of the full-text index ("typelora basesdxl sourcecivitai"), so a
# filtered search is one index intersection instead of checking thousands of word matches row by row.
_FACETS = "'type' || replace(lower(type), '_', '') || ' base' || replace(lower(base_model), '_', '') || ' source' || lower(source)"
FTS_COLUMNS = "name, tags, trigger_words, description, facets"
_V10_FTS_FACETS = f"""
ALTER TABLE models ADD COLUMN facets TEXT GENERATED ALWAYS AS ({_FACETS}) VIRTUAL;
DROP TRIGGER models_fts_insert;
DROP TRIGGER models_fts_delete;
DROP TRIGGER models_fts_update;
DROP TABLE models_fts;
CREATE VIRTUAL TABLE models_fts USING fts5(
    {FTS_COLUMNS},
    content='models', content_rowid='pk', tokenize='unicode61 remove_diacritics 2', prefix='2 3 4 5 6 7 8'
);
CREATE TRIGGER models_fts_insert AFTER INSERT ON models BEGIN
    INSERT INTO models_fts (rowid, {FTS_COLUMNS})
    VALUES (new.pk, new.name, new.tags, new.trigger_words, new.description, new.facets);
END;
CREATE TRIGGER models_fts_delete AFTER DELETE ON models BEGIN
    INSERT INTO models_fts (models_fts, rowid, {FTS_COLUMNS})
    VALUES ('delete', old.pk, old.name, old.tags, old.trigger_words, old.description, old.facets);
END;
CREATE TRIGGER models_fts_update AFTER UPDATE OF name, tags, trigger_words, description, type, base_model, source
ON models BEGIN
    INSERT INTO models_fts (models_fts, rowid, {FTS_COLUMNS})
    VALUES ('delete', old.pk, old.name, old.tags, old.trigger_words, old.description, old.facets);
    INSERT INTO models_fts (rowid, {FTS_COLUMNS})
    VALUES (new.pk, new.name, new.tags, new.trigger_words, new.description, new.facets);
END;
INSERT INTO models_fts (models_fts) VALUES ('rebuild');
"""

MIGRATIONS: tuple[str, ...] = (
    _V1_SEED,
    _V2_IDENTITY_AND_HASHES,
    _V3_CACHE,
    _V4_HASH_CACHE,
    _V5_FTS,
    _V6_LISTING_INDEXES,
    _V7_FILTER_INDEX,
    _V8_COVERING_FILTERS,
    _V9_FTS_PREFIXES,
    _V10_FTS_FACETS,
)
SCHEMA_VERSION = len(MIGRATIONS)
