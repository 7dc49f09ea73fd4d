"""The library index: the record of every model Hubloader knows, one row per model version.

Records only (the cache policy that deletes files is :mod:`hubloader.library.eviction`, fetching from
the sources is :class:`hubloader.registry.ModelRegistry`): register, update, delete, look up (id,
row key, name, any hash, AIR), list, count uses, pin, record sidecar paths, hashes, what a scan
found, and search the rows full-text. Over :mod:`hubloader.library.database`, SQLite used plainly.

* **Row identity.** A row's key is the source's id (``civitai:123@456``, ``huggingface:owner/repo``,
  ``local:<path>`` for a file found on disk), so registering the same thing twice updates the row. A
  sourced registration of a file the scan already knew absorbs the scan's row: one file, one row.
* **State** (row key, status, pinned, use count, last use, owned-by-Hubloader) comes back in
  ``ModelMetadata.extra["registry"]``; it is never written from there.
* **Where a model lives.** ``local_path`` is set only when the file exists: a file deleted or moved
  outside Hubloader is marked ``missing`` the next time a read sees it, and comes back if it reappears.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hubloader.core.errors import InvalidReference, NotFound
from hubloader.core.folders import looks_like_path
from hubloader.core.metadata import BaseModel, ModelMetadata, ModelType, Source
from hubloader.library import database as _db
from hubloader.library.archive import restore_file

_HEX = re.compile(r"[0-9a-f]+")
_HASH_LENGTHS = {8, 10, 12, 64}
#: The shortest SHA256 prefix taken as a hash (``get`` prints 12 hex digits).
_MIN_PREFIX = 8
#: How many candidate ids an ambiguous name lists.
_AMBIGUOUS_SHOWN = 5
#: At most this many rows whose name, files or path contain a looked-up name are read to check it.
_NAME_CANDIDATES = 200
#: Above this many full-text matches a search lists the newest matches instead of ranking them all.
RANK_CAP = 2000
#: Rows with a file on disk first, then the most recently changed.
_PREFER_PRESENT = "(m.status = 'ok' AND m.local_path IS NOT NULL) DESC, m.updated_at DESC"


def registry_key(meta: ModelMetadata) -> str:
    """The row key: the source's id, prefixed with the source unless it already is (``civitai:…``)."""
    if meta.source is Source.LOCAL and meta.local_path:
        return f"local:{Path(meta.local_path).expanduser().absolute()}"
    prefix = f"{meta.source}:"
    return meta.model_id if meta.model_id.startswith(prefix) else prefix + meta.model_id


def registry_state(meta: ModelMetadata) -> dict[str, Any]:
    """What the index records about ``meta`` beyond its metadata (empty for a remote result)."""
    state: dict[str, Any] = meta.extra.get("registry", {})
    return state


class LibraryIndex:
    """The model records in one database file; satisfies the pipeline's :class:`~hubloader.pipeline.ModelIndex`."""

    def __init__(self, db: _db.ModelDatabase) -> None:
        self.db = db

    # -- records --

    def register_model(self, metadata: ModelMetadata, *, managed: bool = False) -> ModelMetadata:
        """Record ``metadata`` (insert or update by row key) and return it as stored.

        ``managed=True`` says Hubloader downloaded the file, so the cache policy may delete it later.
        """
        key = registry_key(metadata)
        status = "missing" if metadata.local_path and not Path(metadata.local_path).exists() else "ok"
        with self.db.write() as conn:
            self.db.upsert(conn, key, metadata, managed=managed, status=status)
            self._absorb_duplicates(conn, key, metadata)
        return self.by_key(key)

    def update_model(self, metadata: ModelMetadata) -> ModelMetadata:
        """Store changed metadata of a model already registered (NotFound otherwise)."""
        key = registry_state(metadata).get("key") or registry_key(metadata)
        if self.db.query_one("SELECT 1 FROM models WHERE id = ?", (key,)) is None:
            raise NotFound(
                f"Cannot update {metadata.model_id!r}: it is not in the registry.",
                hint="Register it first with register_model().",
            )
        with self.db.write() as conn:
            self.db.upsert(conn, key, metadata, managed=False, status=_status_for(metadata))
        return self.by_key(key)

    def delete_model(self, model: str | ModelMetadata) -> bool:
        """Forget a model's row (its file stays); False if it was not registered."""
        meta = self.find_model(model)
        if meta is None:
            return False
        with self.db.write() as conn:
            conn.execute("DELETE FROM models WHERE id = ?", (registry_state(meta)["key"],))
        return True

    def get_model(self, model_id: str | ModelMetadata) -> ModelMetadata:
        """The model named by id, row key, name, any hash or AIR; raises NotFound when nothing matches."""
        meta = self.find_model(model_id)
        if meta is None:
            raise NotFound(
                f"No model {getattr(model_id, 'model_id', model_id)!r} in the registry.",
                hint="Check the spelling, search with registry.search(...), or register it first "
                "(register_from_huggingface / register_from_civitai / scan).",
            )
        return meta

    def find_model(self, ref: str | int | ModelMetadata) -> ModelMetadata | None:
        """Like :meth:`get_model` but returns None when nothing matches (InvalidReference when a name fits several)."""
        if isinstance(ref, ModelMetadata):
            key = registry_state(ref).get("key") or registry_key(ref)
            return self.maybe_by_key(key) or self.find_model(ref.model_id)
        text = str(ref).strip()
        if not text:
            return None
        for where, params in _exact_lookups(text):
            found = self.db.models(where, params, order=_PREFER_PRESENT, limit=1)
            if found:
                return self.checked(found)[0]
        return self._find_by_name(text) or self._find_by_hash(text.rpartition(":")[2].lower())

    def _find_by_name(self, text: str) -> ModelMetadata | None:
        """The one model whose name, version name, file name or file stem is ``text``; several is an error."""
        where, params = _name_candidates(text)
        found = self.db.models(where, params, order=_PREFER_PRESENT, limit=_NAME_CANDIDATES)
        found = [m for m in found if _is_named(m, text)]
        if len(found) > 1:
            ids = ", ".join(m.model_id for m in found[:_AMBIGUOUS_SHOWN])
            more = ", …" if len(found) > _AMBIGUOUS_SHOWN else ""
            raise InvalidReference(
                f"{text!r} names {len(found)} models in the registry: {ids}{more}.",
                hint="Give one of these ids instead.",
            )
        return self.checked(found)[0] if found else None

    def _find_by_hash(self, digest: str) -> ModelMetadata | None:
        """The model known by this hash (SHA256, AutoV1/V2/V3, BLAKE3, CRC32) or SHA256 prefix, if ``digest`` looks like one."""
        if not _HEX.fullmatch(digest) or not (len(digest) in _HASH_LENGTHS or _MIN_PREFIX <= len(digest) <= 64):
            return None
        where = "m.pk IN (SELECT model_pk FROM model_hashes WHERE value = ?) OR substr(m.sha256, 1, ?) = ?"
        found = self.db.models(where, (digest, len(digest), digest), order=_PREFER_PRESENT, limit=1)
        return self.checked(found)[0] if found else None

    def list_models(
        self,
        source: Source | None = None,
        model_type: ModelType | None = None,
        *,
        base_model: BaseModel | None = None,
        local_only: bool = False,
        include_unusable: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ModelMetadata]:
        """Registered models, most recently updated first, optionally filtered; ``limit``/``offset`` page them.

        ``local_only``: usable files on disk (and, with ``include_unusable``, files that failed inspection too).
        Pages are cheap; a list of every one of thousands of models costs tens of microseconds a row.
        """
        where, params = _filters(source=source, model_type=model_type, base_model=base_model)
        if local_only:
            statuses = "('ok', 'invalid')" if include_unusable else "('ok')"
            where.append(f"m.local_path IS NOT NULL AND m.status IN {statuses}")
        order = "m.updated_at DESC, m.pk DESC"
        found = self.checked(self.db.models(" AND ".join(where), params, order=order, limit=limit, offset=offset))
        if not local_only:
            return found
        return [m for m in found if m.local_path or (is_unusable(m) and os.path.exists(registry_state(m)["path"]))]

    def by_key(self, key: str) -> ModelMetadata:
        """The row ``key``, which the caller knows exists (NotFound if another process deleted it meanwhile)."""
        found = self.maybe_by_key(key)
        if found is None:
            raise NotFound(f"Model {key!r} vanished from the registry while in use.", hint="Register it again.")
        return found

    def maybe_by_key(self, key: str) -> ModelMetadata | None:
        found = self.db.models("m.id = ?", (key,))
        return self.checked(found)[0] if found else None

    # -- use, pins, paths --

    def mark_used(self, model: str | ModelMetadata) -> ModelMetadata:
        """Count a use (the LRU clock of the cache) and return the model, restoring it from archive if needed."""
        meta = self.get_model(model)
        if registry_state(meta).get("status") == "archived":
            meta = self.restore(meta)
        key = registry_state(meta)["key"]
        with self.db.write() as conn:
            conn.execute(
                "UPDATE models SET last_used_at = ?, use_count = use_count + 1 WHERE id = ?", (_db.utcnow(), key)
            )
        return self.by_key(key)

    @contextmanager
    def using(self, model: str | ModelMetadata) -> Iterator[ModelMetadata]:
        """Hold a model while it is being loaded: counts a use, and a lease keeps every process from evicting it."""
        meta = self.mark_used(model)
        with self.db.write() as conn:
            lease = conn.execute(
                "INSERT INTO model_leases (model_pk, pid, acquired_at) VALUES (?, ?, ?)",
                (registry_state(meta)["pk"], os.getpid(), _db.utcnow()),
            ).lastrowid
        try:
            yield meta
        finally:
            with self.db.write() as conn:
                conn.execute("DELETE FROM model_leases WHERE rowid = ?", (lease,))

    def pin(self, model: str | ModelMetadata, pinned: bool = True) -> ModelMetadata:
        """Pin (or unpin) a model: a pinned model is never evicted or archived."""
        key = registry_state(self.get_model(model))["key"]
        with self.db.write() as conn:
            conn.execute("UPDATE models SET pinned = ? WHERE id = ?", (int(pinned), key))
        return self.by_key(key)

    def set_paths(
        self, model: str | ModelMetadata, *, sidecar_path: Path | None = None, preview_path: Path | None = None
    ) -> ModelMetadata:
        """Record where the model's sidecar and preview image were written."""
        key = registry_state(self.get_model(model))["key"]
        with self.db.write() as conn:
            if sidecar_path is not None:
                conn.execute("UPDATE models SET sidecar_path = ? WHERE id = ?", (str(sidecar_path), key))
            if preview_path is not None:
                conn.execute("UPDATE models SET preview_path = ? WHERE id = ?", (str(preview_path), key))
        return self.by_key(key)

    def set_location(self, pk: int, *, status: str, local_path: Path | None, archive_path: Path | None) -> None:
        """Record where row ``pk``'s file is now: archived (``archive_path``, its ``.zst``; the place it is
        restored to stays) or back in place at ``local_path``."""
        with self.db.write() as conn:
            conn.execute(
                "UPDATE models SET status = ?, local_path = COALESCE(?, local_path), archive_path = ? WHERE pk = ?",
                (status, str(local_path) if local_path else None, str(archive_path) if archive_path else None, pk),
            )

    def forget_location(self, pk: int) -> None:
        """Row ``pk``'s file was deleted: the model stays known, without a local copy."""
        with self.db.write() as conn:
            conn.execute("UPDATE models SET local_path = NULL, status = 'ok' WHERE pk = ?", (pk,))

    def restore(self, model: str | ModelMetadata) -> ModelMetadata:
        """Decompress an archived model back to its place (see :mod:`hubloader.library.archive`)."""
        meta = self.get_model(model)
        state = registry_state(meta)
        if state["status"] != "archived":
            return meta
        path = restore_file(Path(state["archive_path"]), Path(state["path"]))
        self.set_location(state["pk"], status="ok", local_path=path, archive_path=None)
        return self.by_key(state["key"])

    # -- hashes and what a scan found --

    def record_hashes(self, key: str, hashes: dict[str, str], *, signature: tuple[int, int] | None = None) -> None:
        """Store the hashes of row ``key``'s file (its SHA256 column too); with the file's (size, mtime_ns)
        ``signature`` they are also cached for the file, so an unchanged file is never hashed again."""
        sha256 = str(hashes.get("SHA256") or "").lower()
        with self.db.write() as conn:
            pk, path = conn.execute("SELECT pk, local_path FROM models WHERE id = ?", (key,)).fetchone()
            conn.execute("UPDATE models SET sha256 = ? WHERE pk = ?", (sha256, pk))
            self.db.store_hashes(conn, pk, hashes)
            if signature is not None:
                self.db.store_facts(conn, Path(path), *signature, hashes=hashes)

    def scanned_signatures(self) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
        """For each registered file the scan saw: its (size, mtime_ns) then, and its SHA256 when known."""
        known: dict[str, tuple[int, int]] = {}
        known_hashes: dict[str, str] = {}
        for path, size, mtime_ns, sha256 in self.db.query(
            "SELECT h.path, h.size_bytes, h.mtime_ns, m.sha256 FROM hash_cache h JOIN models m ON m.local_path = h.path"
        ):
            known[path] = (size, mtime_ns)
            if sha256:
                known_hashes[path] = sha256
        return known, known_hashes

    def sourced_paths(self) -> dict[str, str]:
        """Row keys of the files a source described (not a scan), by path."""
        sql = "SELECT local_path, id FROM models WHERE source != 'local' AND local_path IS NOT NULL"
        return dict(self.db.query(sql))

    def record_scan(self, found: list[ModelMetadata], removed: list[Path]) -> None:
        """Record what a library scan found (each file's (size, mtime) with it) and the files it found gone.

        A file that failed inspection is recorded ``invalid``, its reason in ``extra["error"]``. One transaction,
        and per file only the row itself and its facts are written: what the hash cache holds for every path is
        read in one query first (a scan of thousands of files must not cost thousands of look-ups)."""
        paths = [str(meta.local_path) for meta in found]
        keys = [registry_key(meta) for meta in found]
        with self.db.write() as conn, self.db.text_index_deferred(conn, keys):
            cached = self.db.facts_of(conn, paths)
            facts = []
            for meta, path, key in zip(found, paths, keys, strict=True):
                signature = (meta.extra["size"], meta.extra["mtime_ns"])
                known = cached.get(path)
                if known is None or known["signature"] != signature:
                    known = {"hashes": {}, "info": {}}  # a new or changed file: nothing known holds
                if known["hashes"].get("SHA256"):
                    meta.sha256 = known["hashes"]["SHA256"]
                self.db.upsert(conn, key, meta, managed=False, status=_usable(meta))
                old_hashes, old_info = known["hashes"], known["info"]
                facts.append((path, *signature, old_hashes, {**old_info, "scanned": True}))
            self.db.store_many_facts(conn, facts)
            conn.executemany("UPDATE models SET status = 'missing' WHERE local_path = ?", [(str(p),) for p in removed])

    def unusable_files(self) -> dict[str, str]:
        """``{path: reason}`` of every file recorded as failing inspection (status ``invalid``), one query."""
        rows = self.db.query("SELECT local_path, extra FROM models WHERE status = 'invalid' AND local_path IS NOT NULL")
        return {path: str(_db.loads(extra, {}).get("error") or "it failed inspection") for path, extra in rows}

    def unhashed(self, limit: int | None = None) -> list[tuple[str, str, int | None, int | None, dict[str, str]]]:
        """``(key, path, size, mtime_ns, cached hashes)`` of files on disk without a SHA256 yet."""
        rows = self.db.query(
            "SELECT m.id, m.local_path, h.size_bytes, h.mtime_ns, h.hashes FROM models m "
            "LEFT JOIN hash_cache h ON h.path = m.local_path "
            "WHERE m.local_path IS NOT NULL AND m.status = 'ok' AND COALESCE(m.sha256, '') = ''"
            + (f" LIMIT {int(limit)}" if limit else "")
        )
        return [(key, path, size, mtime, _db.loads(hashes, {})) for key, path, size, mtime, hashes in rows]

    def unchecked_on_civitai(self) -> dict[str, str]:
        """Row keys by SHA256 of the scanned files CivitAI has not been asked about yet."""
        return dict(
            self.db.query(
                "SELECT m.sha256, m.id FROM models m LEFT JOIN hash_cache h ON h.path = m.local_path "
                "WHERE m.source = 'local' AND m.status = 'ok' AND length(m.sha256) = 64 "
                "AND json_extract(COALESCE(h.info, '{}'), '$.civitai_checked') IS NULL"
            )
        )

    def mark_civitai_checked(self, path: Path) -> None:
        """Remember that CivitAI was asked about the file at ``path`` as it is now."""
        size, mtime_ns = _db.file_signature(path)
        self.db.cache_file_facts(path, size, mtime_ns, info={"civitai_checked": _db.utcnow()})

    # -- full-text search --

    def search(
        self,
        query: str | None,
        sources: list[Source],
        model_type: ModelType | None = None,
        base_model: BaseModel | None = None,
        limit: int = 20,
    ) -> list[ModelMetadata]:
        """The rows matching ``query`` (all rows without one) and the filters, best first, each with ``extra["where"]``."""
        if _fts_queries(query):
            found = self._search_text(query or "", sources, model_type, base_model, limit)
        else:
            where, params = _filters(sources=sources, model_type=model_type, base_model=base_model)
            order = "(m.status = 'ok' AND m.local_path IS NOT NULL) DESC, m.last_used_at DESC, m.download_count DESC"
            found = self.db.models(" AND ".join(where), params, order=order, limit=limit)
        found = self.checked(found)
        for meta in found:
            meta.extra["where"] = "local" if meta.local_path else "remote"
        return found

    def _search_text(
        self,
        query: str,
        sources: list[Source],
        model_type: ModelType | None,
        base_model: BaseModel | None,
        limit: int,
    ) -> list[ModelMetadata]:
        # Name, tags and trigger words before descriptions, exact words before a prefix; each step
        # runs only to fill the page. Filters are words of the index too (see db migration 10).
        words = re.findall(r"\w+", query.lower())[:8]
        facets = _facet_expression(sources, model_type, base_model)
        found: list[ModelMetadata] = []
        seen: set[int] = set()
        for match in _fts_queries(query):
            if found:
                break  # the last word matched whole: no need to read it as a prefix being typed
            for columns in ("name tags trigger_words", "name tags trigger_words description"):
                if len(found) >= limit:
                    break
                more = self._fts(f"{{{columns}}} : ({match}){facets}", words, limit + len(seen))
                found += [m for m in more if registry_state(m)["pk"] not in seen][: limit - len(found)]
                seen = {registry_state(m)["pk"] for m in found}
        return found

    def _fts(self, match: str, words: list[str], limit: int) -> list[ModelMetadata]:
        """Rows matching ``match``, best first.

        Up to :data:`RANK_CAP` matches: by where the words occur (name, then trigger words, then
        tags), then downloads. More: newest first, without reading them all.
        Not bm25: it reads every matching term's whole list to weigh it, and measured 10-25 ms a
        query at 100,000 rows for a common word; the full-text index still decides what matches.
        """
        sql = f"SELECT rowid FROM models_fts WHERE models_fts MATCH ? LIMIT {RANK_CAP}"
        candidates = [pk for (pk,) in self.db.query(sql, (match,))]
        if len(candidates) >= RANK_CAP:
            sql = f"SELECT rowid FROM models_fts WHERE models_fts MATCH ? ORDER BY rowid DESC LIMIT {int(limit)}"
            pks = [pk for (pk,) in self.db.query(sql, (match,))]
        else:
            pks = self._rank(candidates, words, limit)
        return self.db.models_by_pk(pks)

    def _rank(self, pks: list[int], words: list[str], limit: int) -> list[int]:
        weights = (("name", 10), ("trigger_words", 8), ("tags", 4))
        score = " + ".join(f"(instr(lower({column}), ?) > 0) * {weight}" for _ in words for column, weight in weights)
        params = [w for w in words for _ in weights]
        sql = (
            "SELECT pk FROM models WHERE pk IN (SELECT value FROM json_each(?)) "
            f"ORDER BY {score} DESC, download_count DESC, pk DESC LIMIT {int(limit)}"
        )
        return [pk for (pk,) in self.db.query(sql, (json.dumps(pks), *params))]

    # -- rows and the disk --

    def checked(self, metas: list[ModelMetadata]) -> list[ModelMetadata]:
        """Reconcile rows with the disk: files gone are marked missing, files back are marked ok."""
        changes: list[tuple[str, str]] = []
        for meta in metas:
            state = meta.extra["registry"]
            stored = state.get("path")
            if not stored or state["status"] == "archived":
                continue
            exists = os.path.exists(stored)
            if state["status"] == "ok" and not exists:
                changes.append(("missing", state["key"]))
                state["status"] = "missing"
                meta.local_path = None
            elif state["status"] == "missing" and exists:
                changes.append(("ok", state["key"]))
                state["status"] = "ok"
                meta.local_path = Path(stored)
        if changes:
            with self.db.write() as conn:
                conn.executemany("UPDATE models SET status = ? WHERE id = ?", changes)
        return metas

    def _absorb_duplicates(self, conn: Any, key: str, meta: ModelMetadata) -> None:
        """Fold a scan's ``local:`` row for the same file into the sourced row ``key``, keeping its use history."""
        if meta.source is Source.LOCAL or not meta.local_path:
            return
        rows = conn.execute(
            "SELECT pk, pinned, use_count, last_used_at, sidecar_path, preview_path FROM models "
            "WHERE source = 'local' AND id != ? AND local_path = ?",
            (key, str(meta.local_path)),
        ).fetchall()
        for pk, pinned, use_count, last_used_at, sidecar, preview in rows:
            conn.execute(
                "UPDATE models SET pinned = max(pinned, ?), use_count = use_count + ?, "
                "last_used_at = max(COALESCE(last_used_at, ''), COALESCE(?, '')), "
                "sidecar_path = COALESCE(sidecar_path, ?), preview_path = COALESCE(preview_path, ?) WHERE id = ?",
                (pinned, use_count, last_used_at, sidecar, preview, key),
            )
            conn.execute("DELETE FROM models WHERE pk = ?", (pk,))


# --- helpers -----------------------------------------------------------------------------------


def is_unusable(meta: ModelMetadata) -> bool:
    """Whether the index recorded ``meta``'s file as failing inspection (status ``invalid``; ``extra["error"]`` says why)."""
    return bool(registry_state(meta).get("status") == "invalid")


def _usable(meta: ModelMetadata) -> str:
    """``invalid`` for a scanned file that failed inspection (``extra["error"]`` says why), else ``ok``."""
    return "invalid" if meta.extra.get("error") else "ok"


def _status_for(meta: ModelMetadata) -> str:
    """The status a changed row keeps: archived stays archived, invalid stays invalid, else whether its file is there."""
    state = registry_state(meta)
    if state.get("status") == "archived":
        return "archived"
    path = meta.local_path or state.get("path")
    if path and not Path(path).exists():
        return "missing"
    return "invalid" if state.get("status") == "invalid" else "ok"


def _type_values(model_type: ModelType) -> list[str]:
    # A LoRA search also wants LyCORIS (LoCon/LoHa): CivitAI and the hosts treat them alike.
    if model_type is ModelType.LORA:
        return [ModelType.LORA.value, ModelType.LYCORIS.value]
    return [model_type.value]


def _filters(
    *,
    source: Source | None = None,
    sources: list[Source] | None = None,
    model_type: ModelType | None = None,
    base_model: BaseModel | None = None,
) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if source is not None:
        where.append("m.source = ?")
        params.append(str(Source.parse(source)))
    if sources is not None and set(sources) != set(Source):
        where.append(f"m.source IN ({', '.join('?' * len(sources))})")
        params.extend(str(s) for s in sources)
    if model_type is not None:
        values = _type_values(ModelType.parse(model_type))
        where.append(f"m.type IN ({', '.join('?' * len(values))})")
        params.extend(values)
    if base_model is not None:
        where.append("m.base_model = ?")
        params.append(str(BaseModel.parse(base_model)))
    return where, params


def _facet_expression(sources: list[Source], model_type: ModelType | None, base_model: BaseModel | None) -> str:
    """`` AND {facets} : (…)`` terms for the filters (db migration 10 indexes "typelora basesdxl sourcecivitai")."""
    groups: list[list[str]] = []
    if set(sources) != set(Source):
        groups.append([f"source{Source.parse(s).value}" for s in sources])
    if model_type is not None:
        groups.append([f"type{v.replace('_', '')}" for v in _type_values(ModelType.parse(model_type))])
    if base_model is not None:
        groups.append([f"base{BaseModel.parse(base_model).value.replace('_', '')}"])
    return "".join(" AND {facets} : (" + " OR ".join(f'"{t}"' for t in group) + ")" for group in groups)


def _fts_queries(query: str | None) -> list[str]:
    """FTS5 expressions for ``query``, best first: every word exact, then the last one as a prefix (typing ahead).

    Words are quoted, so user text never becomes FTS5 syntax, and all are required. The prefix form
    comes second because a prefix over a common long word merges every matching term's whole list.
    """
    words = re.findall(r"\w+", (query or "").lower())
    if not words:
        return []
    exact = " ".join(f'"{w}"' for w in words)
    return [exact, exact + "*"]


def _exact_lookups(text: str) -> list[tuple[str, tuple[Any, ...]]]:
    """The unambiguous ways ``text`` names a row, tried in order: row key, source id, local path, AIR."""
    lookups: list[tuple[str, tuple[Any, ...]]] = [("m.id = ?", (text,)), ("m.model_id = ?", (text,))]
    if looks_like_path(text):
        path = str(Path(text).expanduser().absolute())
        lookups.append(("m.local_path = ? OR m.id = ?", (path, f"local:{path}")))
    lookups.append(("m.air = ?", (text,)))
    return lookups


def _like(text: str) -> str:
    """``text`` as a literal inside a LIKE pattern (escape character ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _name_candidates(text: str) -> tuple[str, tuple[Any, ...]]:
    """Where-clause for the rows that may be named ``text`` (a superset; :func:`_is_named` decides)."""
    where = (
        "m.name = ? COLLATE NOCASE OR m.version = ? COLLATE NOCASE "
        "OR m.files LIKE ? ESCAPE '\\' OR m.local_path LIKE ? ESCAPE '\\'"
    )
    return where, (text, text, f"%{_like(text)}%", f"%{_like(text)}%")


def _is_named(meta: ModelMetadata, text: str) -> bool:
    """Whether ``text`` is the model's name or version name, or the name or stem of one of its files."""
    wanted = text.casefold()
    files = [f.name for f in meta.files] + [str(registry_state(meta).get("path") or "")]
    names = [meta.name, meta.version] + [n for f in files if f for n in (Path(f).name, Path(f).stem)]
    return any(n.casefold() == wanted for n in names if n)
