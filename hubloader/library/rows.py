"""A model row of the index and the ModelMetadata it stands for: the columns, writing one, reading many.

Reading is where a listing spends its time, so it is done in bulk: SQLite builds each row's JSON columns and hashes
into one document, and a listing decodes all of them with one ``json.loads``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hubloader.core.metadata import BaseModel, ModelFile, ModelFormat, ModelMetadata, ModelType, Source

#: Canonical names of the hash kinds CivitAI and A1111 use; lookups accept any case.
HASH_KINDS = ("SHA256", "AutoV1", "AutoV2", "AutoV3", "BLAKE3", "CRC32")
_HASH_KIND_BY_LOWER = {kind.lower(): kind for kind in HASH_KINDS}


# --- model rows ------------------------------------------------------------------------------

# Columns written from a ModelMetadata, in this order.
_DATA_COLUMNS = (
    "id",
    "name",
    "source",
    "type",
    "base_model",
    "version",
    "format",
    "size_bytes",
    "sha256",
    "trigger_words",
    "tags",
    "description",
    "download_count",
    "rating",
    "recommended_weight",
    "local_path",
    "remote_url",
    "created_at",
    "updated_at",
    "model_id",
    "version_id",
    "files",
    "preview_urls",
    "air",
    "author",
    "like_count",
    "nsfw",
    "training_tags",
    "trigger_words_source",
    "recommended_weight_source",
    "extra",
    "status",
)
# Registry state read back into ``ModelMetadata.extra["registry"]``.
STATE_COLUMNS = ("managed", "pinned", "last_used_at", "use_count", "sidecar_path", "preview_path", "archive_path")
_SELECT_COLUMNS = ("pk", *_DATA_COLUMNS, *STATE_COLUMNS)
SELECT_MODELS = f"SELECT {', '.join('m.' + c for c in _SELECT_COLUMNS)} FROM models m"

# A value set by the user ("user" provenance) is never overwritten by a re-registration from a source.
_KEEP_USER = {
    "trigger_words": "trigger_words_source",
    "trigger_words_source": "trigger_words_source",
    "recommended_weight": "recommended_weight_source",
    "recommended_weight_source": "recommended_weight_source",
}


def _update_clause(column: str) -> str:
    if column == "status":  # re-registering an archived model (its file is in the archive) keeps it archived
        return "status = CASE WHEN models.status = 'archived' AND excluded.status = 'missing' THEN 'archived' ELSE excluded.status END"
    guard = _KEEP_USER.get(column)
    if guard:
        return (
            f"{column} = CASE WHEN models.{guard} = 'user' AND excluded.{guard} != 'user' "
            f"THEN models.{column} ELSE excluded.{column} END"
        )
    return f"{column} = excluded.{column}"


UPSERT = (
    f"INSERT INTO models ({', '.join(_DATA_COLUMNS)}, managed) VALUES ({', '.join('?' * (len(_DATA_COLUMNS) + 1))}) "
    "ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(_update_clause(c) for c in _DATA_COLUMNS if c not in ("id", "created_at"))
    + ", managed = max(models.managed, excluded.managed)"
)


def canonical_hash_kind(kind: str) -> str:
    return _HASH_KIND_BY_LOWER.get(kind.strip().lower(), kind.strip())


def hashes_of(meta: ModelMetadata) -> dict[str, str]:
    """Every hash ``meta`` carries (its own, its files', the SHA256 and the AutoV2 derived from it), lower-case."""
    found: dict[str, str] = {}
    sources = [meta.hashes] + [f.hashes for f in meta.files if f.primary or len(meta.files) == 1]
    for hashes in sources:
        for kind, value in hashes.items():
            if value:
                found.setdefault(canonical_hash_kind(kind), str(value).strip().lower())
    sha256 = (meta.sha256 or found.get("SHA256", "")).strip().lower()
    if len(sha256) == 64:
        found["SHA256"] = sha256
        found.setdefault("AutoV2", sha256[:10])
    return found


#: ``extra`` keys the registry adds when reading; never stored back.
TRANSIENT_EXTRA = frozenset({"registry", "where"})


def model_row(key: str, meta: ModelMetadata, *, status: str) -> tuple[Any, ...]:
    extra = {k: v for k, v in meta.extra.items() if k not in TRANSIENT_EXTRA}
    values = {
        "id": key,
        "name": meta.name,
        "source": str(meta.source),
        "type": str(meta.type),
        "base_model": str(meta.base_model),
        "version": meta.version,
        "format": str(meta.format),
        "size_bytes": meta.size_bytes,
        "sha256": (meta.sha256 or "").lower(),
        "trigger_words": json.dumps(meta.trigger_words, ensure_ascii=False),
        "tags": json.dumps(meta.tags, ensure_ascii=False),
        "description": meta.description,
        "download_count": meta.download_count,
        "rating": meta.rating,
        "recommended_weight": meta.recommended_weight,
        "local_path": str(meta.local_path) if meta.local_path else None,
        "remote_url": meta.remote_url,
        "created_at": meta.created_at.isoformat(),
        "updated_at": meta.updated_at.isoformat(),
        "model_id": meta.model_id,
        "version_id": str(meta.version_id or ""),
        "files": json.dumps([_file_dict(f) for f in meta.files], ensure_ascii=False),
        "preview_urls": json.dumps(meta.preview_urls, ensure_ascii=False),
        "air": meta.air,
        "author": meta.author,
        "like_count": meta.like_count,
        "nsfw": int(bool(meta.nsfw)),
        "training_tags": json.dumps(meta.training_tags, ensure_ascii=False),
        "trigger_words_source": meta.trigger_words_source,
        "recommended_weight_source": meta.recommended_weight_source,
        "extra": json.dumps(extra, ensure_ascii=False, default=str),
        "status": status,
    }
    return tuple(values[c] for c in _DATA_COLUMNS)


def _file_dict(f: ModelFile) -> dict[str, Any]:
    return {
        "name": f.name,
        "size_bytes": f.size_bytes,
        "url": f.url,
        "sha256": f.sha256,
        "hashes": f.hashes,
        "format": str(f.format),
        "primary": f.primary,
        "kind": f.kind,
        "precision": f.precision,
    }


_EMPTY_JSON = frozenset({"", "[]", "{}", "null"})


def loads(text: str | None, default: Any) -> Any:
    if text is None or text in _EMPTY_JSON:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def _date(text: str | None) -> datetime:
    if text:
        try:
            parsed = datetime.fromisoformat(text)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    return _EPOCH


#: Each enum's members by value: reading a row looks up four of them, and ``Enum.__call__`` costs several times a
#: dict lookup (a list of 449 rows spent a fifth of its conversion time there).
_SOURCES = {member.value: member for member in Source}
_TYPES = {member.value: member for member in ModelType}
_BASES = {member.value: member for member in BaseModel}
_FORMATS = {member.value: member for member in ModelFormat}
_EPOCH = datetime.fromtimestamp(0, timezone.utc)


def _enum(members: dict[str, Any], cls: Any, value: str | None, default: Any) -> Any:
    found = members.get(value) if value is not None else None
    # A first-generation row may hold a name or another case.
    return found if found is not None else cls.parse(value, default)


#: The columns that hold JSON, with the type an empty or unreadable one stands for (a new empty value each time:
#: rows must not share one list).
JSON_COLUMNS: dict[str, type[list[Any]] | type[dict[str, Any]]] = {
    "trigger_words": list,
    "tags": list,
    "files": list,
    "preview_urls": list,
    "training_tags": list,
    "extra": dict,
}
_JSON_INDEXES = [(_SELECT_COLUMNS.index(column), empty) for column, empty in JSON_COLUMNS.items()]


#: Every JSON column of a row joined by SQLite into one text, ``[trigger_words,tags,…,extra]`` as stored (an empty
#: or NULL column as ``null``): a listing then decodes all its rows with one ``json.loads``. Called once per value,
#: the decoder cost ~15x more, a third of a 449-row listing; having SQLite validate or re-serialise the values
#: instead (``json_valid``/``json()``) cost as much as the query itself. So the text is joined as it is, and
#: :func:`decoded_rows` checks what it gets back.
_JSON_DOCUMENT = (
    "'[' || " + " || ',' || ".join(f"coalesce(nullif(m.{column}, ''), 'null')" for column in JSON_COLUMNS) + " || ']'"
)
SELECT_MODELS_DECODABLE = f"SELECT {', '.join('m.' + c for c in _SELECT_COLUMNS)}, {_JSON_DOCUMENT} FROM models m"


def decoded_rows(rows: list[tuple[Any, ...]]) -> list[tuple[tuple[Any, ...], list[Any]]]:
    """Rows of :data:`SELECT_MODELS_DECODABLE` as ``(row without the document, its JSON columns decoded)``.

    All documents in one ``json.loads``; when that fails or does not give one 6-value document per row (a value
    that is not valid JSON, written by hand or by an old version, or one like ``1, 2`` that spoils the join), each
    row is decoded alone, and a row that still does not fit decodes its columns one by one, an unreadable one read
    as empty, as :func:`loads` always read it."""
    width = len(JSON_COLUMNS)
    try:
        documents = json.loads("[" + ",".join(row[-1] for row in rows) + "]") if rows else []
    except ValueError:
        documents = None
    if documents is None or len(documents) != len(rows):
        documents = [_one_document(row[-1]) for row in rows]
    return [
        (row[:-1], _with_empties(document) if _fits(document, width) else _column_by_column(row))
        for row, document in zip(rows, documents, strict=True)
    ]


def _one_document(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _fits(document: Any, width: int) -> bool:
    return isinstance(document, list) and len(document) == width


def _with_empties(document: list[Any]) -> list[Any]:
    """A fresh empty value where a column was empty: rows must not share one list."""
    return [empty() if value is None else value for value, empty in zip(document, JSON_COLUMNS.values(), strict=True)]


def _column_by_column(row: tuple[Any, ...]) -> list[Any]:
    return [loads(row[at], empty()) for at, empty in _JSON_INDEXES]


#: The names :func:`row_to_metadata` unpacks a row into, in :data:`_SELECT_COLUMNS` order (checked below).
_UNPACKED = (
    "pk id name source type base_model version format size_bytes sha256 trigger_words tags description "
    "download_count rating recommended_weight local_path remote_url created_at updated_at model_id version_id files "
    "preview_urls air author like_count nsfw training_tags trigger_words_source recommended_weight_source extra status "
    "managed pinned last_used_at use_count sidecar_path preview_path archive_path"
).split()
assert tuple(_UNPACKED) == _SELECT_COLUMNS, "row_to_metadata unpacks the columns in another order"


def row_to_metadata(row: tuple[Any, ...], hashes: dict[str, str], decoded: list[Any] | None = None) -> ModelMetadata:
    """A ModelMetadata from a row of :data:`SELECT_MODELS` (or its columns of :data:`SELECT_MODELS_DECODABLE`); registry state goes to ``extra["registry"]``.

    ``decoded``: the row's JSON columns already decoded (:func:`decoded_rows`); else they are decoded here.
    The row is unpacked by position, not into a dict: a listing converts hundreds of rows."""
    (
        pk, key, name, source, kind, base_model, version, fmt, size_bytes, sha256, _, _, description,
        download_count, rating, recommended_weight, local_path, remote_url, created_at, updated_at, model_id,
        version_id, _, _, air, author, like_count, nsfw, _, trigger_words_source, recommended_weight_source, _,
        status, managed, pinned, last_used_at, use_count, sidecar_path, preview_path, archive_path,
    ) = row  # fmt: skip
    if decoded is None:
        decoded = [loads(row[at], empty()) for at, empty in _JSON_INDEXES]
    trigger_words, tags, files, preview_urls, training_tags, extra = decoded
    if not isinstance(extra, dict):
        extra = {}
    extra["registry"] = {
        "key": key,
        "pk": pk,
        "path": local_path,
        "status": status,
        "managed": bool(managed),
        "pinned": bool(pinned),
        "last_used_at": last_used_at,
        "use_count": use_count,
        "sidecar_path": sidecar_path,
        "preview_path": preview_path,
        "archive_path": archive_path,
    }
    return ModelMetadata(
        model_id=model_id or key,
        name=name,
        source=_enum(_SOURCES, Source, source, Source.LOCAL),
        type=_enum(_TYPES, ModelType, kind, ModelType.OTHER),
        base_model=_enum(_BASES, BaseModel, base_model, BaseModel.UNKNOWN),
        version=version or "",
        format=_enum(_FORMATS, ModelFormat, fmt, ModelFormat.OTHER),
        size_bytes=size_bytes or 0,
        sha256=sha256 or "",
        trigger_words=trigger_words,
        tags=tags,
        description=description or "",
        download_count=download_count or 0,
        rating=rating or 0.0,
        recommended_weight=recommended_weight,
        local_path=Path(local_path) if local_path and status == "ok" else None,
        remote_url=remote_url or "",
        created_at=_date(created_at),
        updated_at=_date(updated_at),
        version_id=version_id,
        hashes=hashes,
        files=[ModelFile(**{**f, "format": ModelFormat.parse(f.get("format"), ModelFormat.OTHER)}) for f in files]
        if files
        else [],
        preview_urls=preview_urls,
        air=air,
        author=author,
        like_count=like_count,
        nsfw=bool(nsfw),
        training_tags=training_tags,
        trigger_words_source=trigger_words_source,
        recommended_weight_source=recommended_weight_source,
        extra=extra,
    )
