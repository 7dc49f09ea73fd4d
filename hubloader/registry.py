"""ModelRegistry: the local index of every model Hubloader knows, unified search, and the cache policy.

One SQLite file (``$HUBLOADER_HOME/models.db`` unless ``db_path`` says otherwise, see
:mod:`hubloader.library.database`) shared by every process on the machine: ComfyUI's server threads, the A1111
tab and a CLI can use it at once.

Choices a caller should know:

* **Row identity.** A model version is one row. Its key is the source's id (``civitai:123@456``
  for CivitAI, ``huggingface:owner/repo`` for HuggingFace, ``local:<path>`` for a file found on
  disk), so registering the same thing twice updates the row. A sourced registration of a file the
  library scan already knew absorbs the scan's row for the same path: one file, one row.
* **Lookups raise.** :meth:`get_model` accepts a model id, a row key, a name, any hash (SHA256,
  AutoV1/V2/V3, BLAKE3, CRC32) or a CivitAI AIR and raises :class:`~hubloader.core.errors.NotFound` when
  nothing matches; ``find_model`` returns None instead.
* **Registry state** (row key, status, pinned, use count, last use, owned-by-Hubloader) comes back in
  ``ModelMetadata.extra["registry"]``; it is never written from there.
* **Where a model lives.** ``local_path`` is set only when the file exists: a file deleted or moved
  outside Hubloader is marked ``missing`` the next time a listing sees it, and comes back if it
  reappears.
* **Search never fails because a source does.** :meth:`search` returns a :class:`SearchResults`
  (a list) whose ``warnings`` say which remote source could not answer and why (also logged).
  Local rows come first, full-text matched on name, tags, trigger words, then descriptions.
* **Only Hubloader's own downloads are evicted.** The cache limit and :meth:`cleanup_cache` delete
  files Hubloader downloaded (``managed``), never a user's library found by a scan, never a pinned
  model, one being downloaded (a ``.part`` beside it, or its download lock held) or one a process holds with
  :meth:`using`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubloader.core.errors import HubloaderError, NotFound
from hubloader.core.metadata import BaseModel, CacheCleanupReport, ModelMetadata, ModelType, SortBy, Source
from hubloader.core.settings import hubloader_home, load_settings, redact_text, save_settings
from hubloader.library import database as _db

if TYPE_CHECKING:  # pragma: no cover
    from hubloader.library.scan import ScanReport
    from hubloader.pipeline import Placed
    from hubloader.sources.civitai import CivitAIService
    from hubloader.sources.huggingface import HuggingFaceHubService

log = logging.getLogger(__name__)

DB_FILENAME = "models.db"
GIB = 1024**3
REMOTE_SOURCES = (Source.HUGGINGFACE, Source.CIVITAI)
_HEX = re.compile(r"[0-9a-f]+")
_HASH_LENGTHS = {8, 10, 12, 64}
#: Above this many full-text matches a search lists the newest matches instead of ranking them all.
RANK_CAP = 2000


def default_db_path() -> Path:
    return hubloader_home() / DB_FILENAME


def registry_key(meta: ModelMetadata) -> str:
    """The row key: the source's id, prefixed with the source unless it already is (``civitai:…``)."""
    if meta.source is Source.LOCAL and meta.local_path:
        return f"local:{Path(meta.local_path).expanduser().absolute()}"
    prefix = f"{meta.source}:"
    return meta.model_id if meta.model_id.startswith(prefix) else prefix + meta.model_id


def registry_state(meta: ModelMetadata) -> dict[str, Any]:
    """What the registry records about ``meta`` beyond its metadata (empty for a remote result)."""
    return meta.extra.get("registry", {})


class SearchResults(list):
    """The results of :meth:`ModelRegistry.search`, local first; ``warnings`` name sources that failed,
    ``failures`` holds their exceptions (a face that asked one source only may raise it)."""

    def __init__(self, items: Iterable[ModelMetadata] = (), warnings: list[str] | None = None) -> None:
        super().__init__(items)
        self.warnings: list[str] = warnings or []
        self.failures: dict[Source, Exception] = {}


@dataclass
class _CacheEntry:
    meta: ModelMetadata
    pk: int
    size_bytes: int
    busy: str = ""  # why it may not be deleted now ("pinned", "downloading", "in use"); "" when free


@dataclass
class EnrichReport:
    """What :meth:`ModelRegistry.enrich` did: files hashed, hashes asked of CivitAI, files it recognised."""

    hashed: int = 0
    looked_up: int = 0
    matched: int = 0
    errors: list[str] = field(default_factory=list)


class ModelRegistry:
    """The unified model registry (seed AC 3). Cheap to construct: services start on first use."""

    def __init__(self, db_path: Path | str | None = None) -> None:
        self.db_path = Path(db_path).expanduser() if db_path else default_db_path()
        self.db = _db.ModelDatabase(self.db_path)
        self._hf_service: HuggingFaceHubService | None = None
        self._civitai_service: CivitAIService | None = None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ModelRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- services (built on first use, so opening the registry never imports huggingface_hub) --

    @property
    def hf_service(self) -> HuggingFaceHubService:
        if self._hf_service is None:
            from hubloader.sources.huggingface import HuggingFaceHubService

            self._hf_service = HuggingFaceHubService()
        return self._hf_service

    @hf_service.setter
    def hf_service(self, service: HuggingFaceHubService) -> None:
        self._hf_service = service

    @property
    def civitai_service(self) -> CivitAIService:
        if self._civitai_service is None:
            from hubloader.sources.civitai import CivitAIService

            self._civitai_service = CivitAIService()
        return self._civitai_service

    @civitai_service.setter
    def civitai_service(self, service: CivitAIService) -> None:
        self._civitai_service = service

    # -- CRUD --

    def register_model(self, metadata: ModelMetadata, *, managed: bool = False) -> ModelMetadata:
        """Record ``metadata`` (insert or update by row key) and return it as stored.

        ``managed=True`` says Hubloader downloaded the file, so the cache policy may delete it later.
        """
        key = registry_key(metadata)
        status = "ok"
        if metadata.local_path and not Path(metadata.local_path).exists():
            status = "missing"
        with self.db.write() as conn:
            self.db.upsert(conn, key, metadata, managed=managed, status=status)
            self._absorb_duplicates(conn, key, metadata)
        return self._by_key(key)

    def update_model(self, metadata: ModelMetadata) -> ModelMetadata:
        """Store changed metadata of a model already registered (NotFound otherwise)."""
        key = registry_state(metadata).get("key") or registry_key(metadata)
        if self.db.query_one("SELECT 1 FROM models WHERE id = ?", (key,)) is None:
            raise NotFound(
                f"Cannot update {metadata.model_id!r}: it is not in the registry.",
                hint="Register it first with register_model().",
            )
        with self.db.write() as conn:
            self.db.upsert(conn, key, metadata, managed=False, status=self._status_for(metadata))
        return self._by_key(key)

    def delete_model(self, model: str | ModelMetadata, *, delete_file: bool = False) -> bool:
        """Forget a model (and delete its file if ``delete_file``); False if it was not registered."""
        meta = self.find_model(model)
        if meta is None:
            return False
        if delete_file and meta.local_path:
            _remove_path(meta.local_path)
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
        """Like :meth:`get_model` but returns None when nothing matches."""
        if isinstance(ref, ModelMetadata):
            key = registry_state(ref).get("key") or registry_key(ref)
            return self._maybe_by_key(key) or self.find_model(ref.model_id)
        text = str(ref).strip()
        if not text:
            return None
        prefer = "(m.status = 'ok' AND m.local_path IS NOT NULL) DESC, m.updated_at DESC"
        for where, value in (
            ("m.id = ?", text),
            ("m.model_id = ?", text),
            ("m.name = ? COLLATE NOCASE", text),
            ("m.air = ?", text),
        ):
            found = self.db.models(where, (value,), order=prefer, limit=1)
            if found:
                return self._checked(found)[0]
        digest = text.rpartition(":")[2].lower()
        if len(digest) in _HASH_LENGTHS and _HEX.fullmatch(digest):
            found = self.db.models(
                "m.pk IN (SELECT model_pk FROM model_hashes WHERE value = ?)", (digest,), order=prefer, limit=1
            )
            if found:
                return self._checked(found)[0]
        return None

    def list_models(
        self,
        source: Source | None = None,
        model_type: ModelType | None = None,
        *,
        base_model: BaseModel | None = None,
        local_only: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ModelMetadata]:
        """Registered models, most recently updated first, optionally filtered; ``limit``/``offset`` page them.

        Pages are cheap; a list of every one of thousands of models costs tens of microseconds a row.
        """
        where, params = _filters(source=source, model_type=model_type, base_model=base_model)
        if local_only:
            where.append("m.local_path IS NOT NULL AND m.status = 'ok'")
        found = self._checked(
            self.db.models(
                " AND ".join(where), params, order="m.updated_at DESC, m.pk DESC", limit=limit, offset=offset
            )
        )
        return [m for m in found if m.local_path] if local_only else found

    # -- registration from the sources --

    def register_from_huggingface(self, model_id: str, revision: str = "main") -> ModelMetadata:
        """Download a HuggingFace repo (or one file of it, ``owner/repo/file``) and register it.

        A single-file repo's weight goes to the HuggingFace cache (shared with diffusers) and is linked
        into the host's folder for its type; a diffusers repo stays a snapshot folder in the cache.
        """
        from hubloader.core.folders import active_folders
        from hubloader.pipeline import fetch
        from hubloader.sources.references import parse_reference

        placed = fetch(model_id, active_folders(), revision=revision)
        ref = parse_reference(model_id)
        if placed.source is not None and not ref.filename:
            # A repo registered by name is one row under the repo's id (the seed's contract), as its search result.
            placed.source = dataclasses.replace(placed.source, model_id=ref.repo_id)
        return self._describe(placed)

    def register_from_civitai(self, model_id: int | str, version_id: int | None = None) -> ModelMetadata:
        """Download a CivitAI model version (the newest when ``version_id`` is None) into the host's folder and register it.

        ``model_id`` may be the number or any CivitAI reference (``civitai:123@456``, an AIR, a URL).
        """
        from hubloader.core.folders import active_folders
        from hubloader.pipeline import fetch

        ref = f"civitai:{model_id}" if str(model_id).strip().isdigit() else str(model_id)
        return self._describe(fetch(ref, active_folders(), revision=None if version_id is None else str(version_id)))

    def _describe(self, placed: Placed) -> ModelMetadata:
        """The pipeline's last step (:func:`hubloader.pipeline.describe_and_register`): header, sidecars, row."""
        from hubloader.pipeline import record

        return record(placed, self)

    def download_model(self, ref: str | ModelMetadata) -> ModelMetadata:
        """Make a model available locally and count a use: a known local copy is reused, an archived one restored.

        ``ref`` is anything :meth:`get_model` accepts for a model the registry knows (a remote one is
        downloaded from its source), or a new CivitAI/HuggingFace reference (``civitai:123@456``,
        ``owner/repo``, a URL, an AIR). Afterwards the cache limit is applied to the other downloads.
        """
        known = self.find_model(ref)
        if known is not None and (known.local_path or registry_state(known).get("status") == "archived"):
            return self.mark_used(known)
        meta = self._fetch(known) if known is not None else self._fetch_reference(str(ref))
        meta = self.mark_used(meta)
        report = self.enforce_cache_limit(protect=[registry_state(meta)["key"]])
        if self.cache_limit_gb is not None and report.total_size_gb > self.cache_limit_gb:
            log.warning(
                "The cache holds %.2f GB, over its %.2f GB limit: the rest is pinned, in use or just downloaded.",
                report.total_size_gb,
                self.cache_limit_gb,
            )
        return meta

    def _fetch(self, known: ModelMetadata) -> ModelMetadata:
        if known.source is Source.CIVITAI:
            return self.register_from_civitai(known.model_id)
        if known.source is Source.HUGGINGFACE:
            return self.register_from_huggingface(known.model_id, revision=known.version_id or "main")
        if not known.remote_url:
            raise NotFound(
                f"{known.name} has no local copy and no address to download it from.",
                hint="Register it from its source (register_from_civitai / register_from_huggingface).",
            )
        from hubloader.core.folders import active_folders
        from hubloader.pipeline import fetch

        return self._describe(fetch(known, active_folders()))

    def _fetch_reference(self, text: str) -> ModelMetadata:
        """A new reference (CivitAI, HuggingFace, a hash CivitAI knows) fetched into the host's folders."""
        from hubloader.core.folders import active_folders
        from hubloader.pipeline import fetch

        return self._describe(fetch(text, active_folders()))

    # -- library scan and background enrichment --

    def scan(self, dirs: Iterable[str | Path] | None = None, *, scan_pickles: bool = False) -> ScanReport:
        """Register every model file under ``dirs`` (default: the host's model folders). Incremental:
        a file whose (size, mtime) the registry already recorded is not opened again."""
        from hubloader.core.folders import active_folders
        from hubloader.library.scan import describe_file, scan_paths

        roots = [Path(d) for d in dirs] if dirs is not None else active_folders().existing_dirs()
        known: dict[str, tuple[int, int]] = {}
        known_hashes: dict[str, str] = {}
        for path, size, mtime_ns, sha256 in self.db.query(
            "SELECT h.path, h.size_bytes, h.mtime_ns, m.sha256 FROM hash_cache h JOIN models m ON m.local_path = h.path"
        ):
            known[path] = (size, mtime_ns)
            if sha256:
                known_hashes[path] = sha256
        report = scan_paths(roots, known=known, known_hashes=known_hashes, scan_pickles=scan_pickles)
        sourced = {
            path: pk
            for path, pk in self.db.query(
                "SELECT local_path, id FROM models WHERE source != 'local' AND local_path IS NOT NULL"
            )
        }
        with self.db.write() as conn:
            for meta in report.models:
                path = str(meta.local_path)
                if path in sourced:  # a file we downloaded and that changed: keep its source metadata
                    meta = describe_file(meta.local_path, source=self._by_key(sourced[path]))
                cached = self.db.cached_facts_in(conn, path)
                if (
                    cached
                    and cached["hashes"].get("SHA256")
                    and (meta.extra["size"], meta.extra["mtime_ns"]) == cached["signature"]
                ):
                    meta.sha256 = cached["hashes"]["SHA256"]
                self.db.upsert(conn, registry_key(meta), meta, managed=False, status="ok")
                self.db.store_facts(
                    conn, Path(path), meta.extra["size"], meta.extra["mtime_ns"], info={"scanned": True}
                )
            conn.executemany(
                "UPDATE models SET status = 'missing' WHERE local_path = ?", [(str(p),) for p in report.removed]
            )
        return report

    def enrich(
        self, *, lookup_civitai: bool = True, cancel: threading.Event | None = None, limit: int | None = None
    ) -> EnrichReport:
        """Background work after a scan: hash local files not hashed yet, then ask CivitAI who they are
        (by hash, in batches of at most 100). Call it explicitly (or :meth:`start_enrichment`); never
        run at import or host start-up, because hashing a library reads every byte of it."""
        from hubloader.library.scan import describe_file, hash_models

        report = EnrichReport()
        rows = self.db.query(
            "SELECT m.id, m.local_path, h.size_bytes, h.mtime_ns, h.hashes FROM models m "
            "LEFT JOIN hash_cache h ON h.path = m.local_path "
            "WHERE m.local_path IS NOT NULL AND m.status = 'ok' AND COALESCE(m.sha256, '') = ''"
            + (f" LIMIT {int(limit)}" if limit else "")
        )
        keys = {path: key for key, path, *_ in rows}
        known = {
            path: (size, mtime, _db.loads(hashes, {})) for _, path, size, mtime, hashes in rows if size is not None
        }
        for path, (size, mtime_ns), hashes in hash_models(list(keys), known=known, cancel=cancel):
            values = hashes.civitai() if hashes is not None else dict(known[str(path)][2])
            if hashes is not None:
                report.hashed += 1
                self.db.cache_file_facts(path, size, mtime_ns, hashes=values)
            self._record_hashes(keys[str(path)], values)
        if not lookup_civitai:
            return report
        pending = {
            sha: key
            for key, sha in self.db.query(
                "SELECT m.id, m.sha256 FROM models m LEFT JOIN hash_cache h ON h.path = m.local_path "
                "WHERE m.source = 'local' AND m.status = 'ok' AND length(m.sha256) = 64 "
                "AND json_extract(COALESCE(h.info, '{}'), '$.civitai_checked') IS NULL"
            )
        }
        if not pending:
            return report
        try:
            found = self.civitai_service.find_by_hashes(list(pending))  # batched by the service (≤ 100 a request)
        except HubloaderError as exc:
            report.errors.append(f"CivitAI lookup failed: {exc}")
            return report
        report.looked_up = len(pending)
        for sha, key in pending.items():
            local = self._by_key(key)
            if sha in found:
                report.matched += 1
                self.register_model(describe_file(local.local_path, source=found[sha]))
            size, mtime_ns = _db.file_signature(local.local_path)
            self.db.cache_file_facts(local.local_path, size, mtime_ns, info={"civitai_checked": _db.utcnow()})
        return report

    def start_enrichment(self, **kwargs: Any) -> threading.Thread:
        """Run :meth:`enrich` on a daemon thread with its own registry connection; returns the thread."""

        def work() -> None:
            with ModelRegistry(self.db_path) as registry:
                registry._civitai_service = self._civitai_service
                result = registry.enrich(**kwargs)
                log.info("Enrichment: %s", result)

        thread = threading.Thread(target=work, name="hubloader-enrich", daemon=True)
        thread.start()
        return thread

    def _record_hashes(self, key: str, hashes: dict[str, str]) -> None:
        sha256 = str(hashes.get("SHA256") or "").lower()
        with self.db.write() as conn:
            pk = conn.execute("SELECT pk FROM models WHERE id = ?", (key,)).fetchone()[0]
            conn.execute("UPDATE models SET sha256 = ? WHERE pk = ?", (sha256, pk))
            conn.executemany(
                "INSERT OR REPLACE INTO model_hashes (model_pk, kind, value) VALUES (?, ?, ?)",
                [(pk, _db.canonical_hash_kind(k), str(v).lower()) for k, v in hashes.items() if v],
            )

    # -- search --

    def search(
        self,
        query: str | None = None,
        sources: Iterable[Source] | None = None,
        model_type: ModelType | None = None,
        base_model: BaseModel | None = None,
        local_only: bool = False,
        limit: int = 20,
        *,
        remote_only: bool = False,
        sort: SortBy | None = None,
        nsfw: bool | None = None,
    ) -> SearchResults:
        """Unified search: the local index first, then live results from the remote sources asked for.

        ``sources=None`` means every source. Results are de-duplicated (same source id or same
        hash = one result, the local one kept) and each says where it lives:
        ``extra["where"]`` is ``"local"`` (``local_path`` is set) or ``"remote"`` (``remote_url``).
        ``remote_only`` asks the hubs alone (a hub browser: the command line's search, the app's tab);
        ``limit`` applies to each source. ``sort`` orders each hub's answer (None: the hub's own
        default); ``nsfw`` None leaves CivitAI's default, False also hides flagged results of every source.
        """
        wanted = _source_list(sources)
        if not wanted:
            return SearchResults()
        local = [] if remote_only else self._search_local(query, wanted, model_type, base_model, limit)
        results = SearchResults(local)
        remotes = [] if local_only else [s for s in wanted if s in REMOTE_SOURCES]
        if remotes:
            seen_ids = {(m.source, m.model_id) for m in results}
            seen_hashes = {h for m in results for h in _db.hashes_of(m).values() if len(h) == 64}
            asked = dict(model_type=model_type, base_model=base_model, limit=limit, sort=sort, nsfw=nsfw)
            for source, found, error in self._search_remote(remotes, query, **asked):
                if error is not None:
                    message = f"{source} search failed: {_failure_text(error)}"
                    log.warning("%s", message)
                    results.warnings.append(message)
                    results.failures[source] = error
                    continue
                if nsfw is False:
                    found = [m for m in found if not m.nsfw]
                for meta in found:
                    hashes = {h for h in _db.hashes_of(meta).values() if len(h) == 64}
                    if (meta.source, meta.model_id) in seen_ids or hashes & seen_hashes:
                        continue
                    seen_ids.add((meta.source, meta.model_id))
                    seen_hashes |= hashes
                    meta.extra["where"] = "local" if meta.local_path else "remote"
                    results.append(meta)
        return results

    def _search_local(
        self,
        query: str | None,
        sources: list[Source],
        model_type: ModelType | None,
        base_model: BaseModel | None,
        limit: int,
    ) -> list[ModelMetadata]:
        matches = _fts_queries(query)
        words = re.findall(r"\w+", (query or "").lower())[:8]
        if matches:
            # Name, tags and trigger words before descriptions, exact words before a prefix; each step
            # runs only to fill the page. Filters are words of the index too (see db migration 10).
            facets = _facet_expression(sources, model_type, base_model)
            found: list[ModelMetadata] = []
            seen: set[int] = set()
            for match in matches:
                if found:
                    break  # the last word matched whole: no need to read it as a prefix being typed
                for columns in ("name tags trigger_words", "name tags trigger_words description"):
                    if len(found) >= limit:
                        break
                    more = self._fts(f"{{{columns}}} : ({match}){facets}", words, limit + len(seen))
                    found += [m for m in more if registry_state(m)["pk"] not in seen][: limit - len(found)]
                    seen = {registry_state(m)["pk"] for m in found}
        else:
            where, params = _filters(sources=sources, model_type=model_type, base_model=base_model)
            order = "(m.status = 'ok' AND m.local_path IS NOT NULL) DESC, m.last_used_at DESC, m.download_count DESC"
            found = self.db.models(" AND ".join(where), params, order=order, limit=limit)
        found = self._checked(found)
        for meta in found:
            meta.extra["where"] = "local" if meta.local_path else "remote"
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

    def _search_remote(
        self,
        sources: list[Source],
        query: str | None,
        *,
        model_type: ModelType | None,
        base_model: BaseModel | None,
        limit: int,
        sort: SortBy | None,
        nsfw: bool | None,
    ) -> list[tuple[Source, list[ModelMetadata], Exception | None]]:
        def one(source: Source) -> tuple[Source, list[ModelMetadata], Exception | None]:
            # A remote source must never break the answer the others (and the local index) give.
            try:
                if source is Source.HUGGINGFACE:
                    from hubloader.core.metadata import ModelFilter

                    wanted = ModelFilter(model_type=model_type, base_model=base_model, sort=sort)
                    found = self.hf_service.search_models(query or "", filter=wanted, limit=limit)
                else:
                    found = self.civitai_service.search_models(
                        query=query or None,
                        type=model_type,
                        base_model=base_model,
                        sort=sort or SortBy.POPULARITY,
                        limit=limit,
                        nsfw=nsfw,
                    )
                return source, list(found), None
            except Exception as exc:  # reported to the caller as a warning
                log.debug("%s search failed", source, exc_info=True)
                return source, [], exc

        with ThreadPoolExecutor(max_workers=len(sources), thread_name_prefix="hubloader-search") as pool:
            return list(pool.map(one, sources))

    # -- use, pins, leases --

    def mark_used(self, model: str | ModelMetadata) -> ModelMetadata:
        """Count a use (the LRU clock of the cache) and return the model, restoring it from archive if needed."""
        meta = self.get_model(model)
        if registry_state(meta).get("status") == "archived":
            meta = self.restore(meta)
        with self.db.write() as conn:
            conn.execute(
                "UPDATE models SET last_used_at = ?, use_count = use_count + 1 WHERE id = ?",
                (_db.utcnow(), registry_state(meta)["key"]),
            )
        return self._by_key(registry_state(meta)["key"])

    touch = mark_used

    @contextmanager
    def using(self, model: str | ModelMetadata) -> Iterator[ModelMetadata]:
        """Hold a model while it is being loaded: counts a use, and no process may evict it meanwhile."""
        meta = self.mark_used(model)
        pk = registry_state(meta)["pk"]
        with self.db.write() as conn:
            lease = conn.execute(
                "INSERT INTO model_leases (model_pk, pid, acquired_at) VALUES (?, ?, ?)",
                (pk, os.getpid(), _db.utcnow()),
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
        return self._by_key(key)

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
        return self._by_key(key)

    # -- cache --

    def list_cached_models(self) -> list[ModelMetadata]:
        """Models with a local copy on disk (``local_path.exists()`` holds for each), least recently used first."""
        found = self.db.models(
            "m.local_path IS NOT NULL AND m.status IN ('ok', 'missing')",
            order="COALESCE(m.last_used_at, m.created_at) ASC",
        )
        return [m for m in self._checked(found) if m.local_path]

    @property
    def cache_limit_gb(self) -> float | None:
        """The persisted limit for Hubloader's downloads (settings key ``cache_limit_gb``), None for none."""
        value = load_settings().get("cache_limit_gb")
        return float(value) if value not in (None, "") else None

    def set_cache_limit(self, max_size_gb: float | None) -> CacheCleanupReport:
        """Persist the cache limit and apply it now (least recently used downloads go first)."""
        if max_size_gb is not None and max_size_gb < 0:
            raise ValueError("max_size_gb must be >= 0 (or None for no limit).")
        save_settings({"cache_limit_gb": max_size_gb})
        return self.enforce_cache_limit()

    def enforce_cache_limit(self, *, protect: Iterable[str] = ()) -> CacheCleanupReport:
        """Evict least recently used downloads until they fit the limit; ``protect`` lists row keys to keep."""
        limit = self.cache_limit_gb
        entries = self._cache_entries()
        if limit is None:
            return self._report(entries, [], dry_run=False)
        keep = set(protect)
        return self._evict(entries, budget=int(limit * GIB), keep_count=None, protect=keep, dry_run=False)

    def cleanup_cache(
        self, keep_recent: int = 10, max_size_gb: float = 50.0, dry_run: bool = False
    ) -> CacheCleanupReport:
        """Delete Hubloader's least recently used downloads, keeping the ``keep_recent`` most recent.

        Deletes every download beyond the ``keep_recent`` most recently used, then the oldest of
        those too while the total exceeds ``max_size_gb``. Pinned models, files being downloaded and
        models a process holds are never deleted (they are reported in ``kept_models``, so with pins
        ``kept_models`` may exceed ``keep_recent``). ``dry_run`` reports without deleting.
        """
        entries = self._cache_entries()
        return self._evict(
            entries, budget=int(max_size_gb * GIB), keep_count=max(0, keep_recent), protect=set(), dry_run=dry_run
        )

    def _cache_entries(self) -> list[_CacheEntry]:
        """Hubloader's downloads present on disk, least recently used first."""
        rows = self.db.query(
            "SELECT m.pk, m.id, m.pinned, EXISTS (SELECT 1 FROM model_leases l WHERE l.model_pk = m.pk) "
            "FROM models m WHERE m.managed = 1 AND m.status = 'ok' AND m.local_path IS NOT NULL"
        )
        leased = {pk: key for pk, key, _, has_lease in rows if has_lease and self._lease_alive(pk)}
        metas = {registry_state(m)["pk"]: m for m in self.list_cached_models()}
        entries = []
        for pk, _key, pinned, _ in rows:
            meta = metas.get(pk)
            if meta is None:
                continue
            busy = "pinned" if pinned else ("in use" if pk in leased else _download_in_progress(meta.local_path))
            entries.append(_CacheEntry(meta, pk, _disk_size(meta.local_path), busy))
        order = {pk: i for i, pk in enumerate(metas)}
        entries.sort(key=lambda e: order[e.pk])
        return entries

    def _lease_alive(self, pk: int) -> bool:
        """True if a live process holds ``pk``; leases of dead processes are dropped."""
        pids = [pid for (pid,) in self.db.query("SELECT pid FROM model_leases WHERE model_pk = ?", (pk,))]
        dead = [pid for pid in pids if not _pid_alive(pid)]
        if dead:
            with self.db.write() as conn:
                conn.executemany("DELETE FROM model_leases WHERE model_pk = ? AND pid = ?", [(pk, p) for p in dead])
        return len(dead) < len(pids)

    def _evict(
        self,
        entries: list[_CacheEntry],
        *,
        budget: int,
        keep_count: int | None,
        protect: set[str],
        dry_run: bool,
    ) -> CacheCleanupReport:
        victims: list[_CacheEntry] = []
        total = sum(e.size_bytes for e in entries)
        free = [e for e in entries if not e.busy and registry_state(e.meta)["key"] not in protect]
        if keep_count is not None:
            beyond = free[: max(0, len(free) - keep_count)]
            victims.extend(beyond)
            total -= sum(e.size_bytes for e in beyond)
        for entry in free:
            if total <= budget:
                break
            if entry not in victims:
                victims.append(entry)
                total -= entry.size_bytes
        if not dry_run:
            victims = self._delete_entries(victims)
        return self._report(entries, victims, dry_run=dry_run)

    def _delete_entries(self, victims: list[_CacheEntry]) -> list[_CacheEntry]:
        deleted = []
        for entry in victims:
            try:
                if entry.meta.source is Source.HUGGINGFACE:
                    # The path is the HF cache's own snapshot, or a host-folder link to its blob
                    # (hubloader.pipeline): deleting only the path would free nothing.
                    self.hf_service.delete_cached_model(_hf_cached_name(entry.meta))
                _remove_path(entry.meta.local_path)
            except (OSError, HubloaderError) as exc:
                log.warning("Could not delete %s: %s", entry.meta.local_path, exc)
                continue
            with self.db.write() as conn:
                conn.execute("UPDATE models SET local_path = NULL, status = 'ok' WHERE pk = ?", (entry.pk,))
            deleted.append(entry)
        return deleted

    def _report(self, entries: list[_CacheEntry], victims: list[_CacheEntry], *, dry_run: bool) -> CacheCleanupReport:
        gone = {e.pk for e in victims}
        kept = [e for e in entries if e.pk not in gone]
        failed = [e for e in victims if e.pk not in gone]
        return CacheCleanupReport(
            deleted_count=len(victims),
            freed_space_gb=sum(e.size_bytes for e in victims) / GIB,
            kept_models=[e.meta for e in kept],
            deleted_models=[e.meta for e in victims],
            dry_run=dry_run,
            total_size_gb=sum(e.size_bytes for e in kept) / GIB,
            errors=[f"could not delete {e.meta.local_path}" for e in failed],
        )

    # -- archive --

    def archive(self, model: str | ModelMetadata) -> ModelMetadata:
        """Compress a cold model into ``<file>.zst`` (see :mod:`hubloader.library.archive`); restored on next use."""
        from hubloader.library.archive import archive_file

        meta = self.get_model(model)
        state = registry_state(meta)
        if not meta.local_path or state["pinned"]:
            raise HubloaderError(
                f"{meta.name} cannot be archived: it is {'pinned' if state['pinned'] else 'not on disk'}.",
                hint="Unpin it first, or download it.",
            )
        if _download_in_progress(meta.local_path) or self._lease_alive(state["pk"]):
            raise HubloaderError(f"{meta.name} is in use.", hint="Try again when it is no longer being loaded.")
        archived = archive_file(meta.local_path)
        with self.db.write() as conn:
            conn.execute(
                "UPDATE models SET status = 'archived', archive_path = ? WHERE pk = ?", (str(archived), state["pk"])
            )
        return self._by_key(state["key"])

    def restore(self, model: str | ModelMetadata) -> ModelMetadata:
        """Decompress an archived model back to its place."""
        from hubloader.library.archive import restore_file

        meta = self.get_model(model)
        state = registry_state(meta)
        if state["status"] != "archived":
            return meta
        path = restore_file(Path(state["archive_path"]), Path(state["path"]))
        with self.db.write() as conn:
            conn.execute(
                "UPDATE models SET status = 'ok', archive_path = NULL, local_path = ? WHERE pk = ?",
                (str(path), state["pk"]),
            )
        return self._by_key(state["key"])

    # -- internals --

    def _by_key(self, key: str) -> ModelMetadata:
        found = self._maybe_by_key(key)
        if found is None:
            raise NotFound(f"Model {key!r} vanished from the registry while in use.", hint="Register it again.")
        return found

    def _maybe_by_key(self, key: str) -> ModelMetadata | None:
        found = self.db.models("m.id = ?", (key,))
        return self._checked(found)[0] if found else None

    def _status_for(self, meta: ModelMetadata) -> str:
        state = registry_state(meta)
        if state.get("status") == "archived":
            return "archived"
        path = meta.local_path or state.get("path")
        return "missing" if path and not Path(path).exists() else "ok"

    def _checked(self, metas: list[ModelMetadata]) -> list[ModelMetadata]:
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


def _failure_text(exc: Exception) -> str:
    """Our errors say what to do already; anything else is named by its type."""
    return redact_text(str(exc) if isinstance(exc, HubloaderError) else f"{type(exc).__name__}: {exc}")


def _source_list(sources: Iterable[Source] | None) -> list[Source]:
    if sources is None:
        return [Source.LOCAL, *REMOTE_SOURCES, Source.URL]
    return [Source.parse(s) for s in sources]


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


def _download_in_progress(path: Path | None) -> str:
    """ "downloading" if a ``.part`` sits beside ``path`` (or inside it, for a folder) or its download lock is held."""
    if path is None:
        return ""
    from hubloader.engine.download import lock_path

    path = Path(path)
    if path.with_name(path.name + ".part").exists() or _lock_held(lock_path(path)):
        return "downloading"
    if path.is_dir() and any(p.suffix in (".part", ".incomplete") for p in path.rglob("*")):
        return "downloading"
    return ""


def _lock_held(lock: Path) -> bool:
    """True if another download holds ``lock`` (the download engine's per-target file lock; the file outlives it)."""
    if not lock.exists():
        return False
    from filelock import FileLock, Timeout

    try:
        with FileLock(str(lock), timeout=0):
            return False
    except Timeout:
        return True


def _hf_cached_name(meta: ModelMetadata) -> str:
    """What to delete from the HF cache for a row: its one file (``owner/repo/file``), else the whole repo."""
    if meta.local_path is None or not Path(meta.local_path).is_file() or len(meta.files) != 1:
        return meta.model_id
    name = meta.files[0].name
    return meta.model_id if meta.model_id.endswith(f"/{name}") else f"{meta.model_id}/{name}"


def _disk_size(path: Path | None) -> int:
    if path is None:
        return 0
    path = Path(path)
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size
    except OSError:
        return 0


def _remove_path(path: Path | None) -> None:
    if path is None:
        return
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":
        return True  # os.kill(pid, 0) would terminate the process on Windows; stale leases expire instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else, or we cannot tell: assume alive (safe side)
    return True
