"""ModelRegistry: the facade over the library index, the cache policy and the sources (seed AC 3).

It composes, and keeps each job where it belongs:

* the **records** — :class:`~hubloader.library.index.LibraryIndex` (register, look up, list, use counts,
  pins, local full-text search), one SQLite file (``$HUBLOADER_HOME/models.db`` unless ``db_path``
  says otherwise, see :mod:`hubloader.library.database`) shared by every process on the machine:
  ComfyUI's server threads, the A1111 tab and a CLI can use it at once;
* the **cache policy** — :class:`~hubloader.library.eviction.CachePolicy` (the limit, clean-ups,
  archives): only Hubloader's own downloads are evicted, never a user's library, a pinned model, one
  being downloaded or one a process holds with :meth:`ModelRegistry.using`;
* the **sources** — HuggingFace and CivitAI services, built on first use, through the install
  pipeline (:mod:`hubloader.pipeline`), the library scan and the background enrichment.

Choices a caller should know:

* **Lookups raise.** :meth:`~hubloader.library.index.LibraryIndex.get_model` accepts a model id, a row
  key, a name, any hash (SHA256, AutoV1/V2/V3, BLAKE3, CRC32) or a CivitAI AIR and raises
  :class:`~hubloader.core.errors.NotFound` when nothing matches; ``find_model`` returns None instead.
* **Registry state** (row key, status, pinned, use count, last use, owned-by-Hubloader) comes back in
  ``ModelMetadata.extra["registry"]`` (:func:`registry_state`); it is never written from there.
* **Search never fails because a source does.** :meth:`ModelRegistry.search` returns a
  :class:`SearchResults` (a list) whose ``warnings`` say which remote source could not answer and why
  (also logged). Local rows come first, full-text matched on name, tags, trigger words, then descriptions.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hubloader.core.errors import HubloaderError, NotFound
from hubloader.core.metadata import (
    BaseModel,
    CacheCleanupReport,
    ModelFilter,
    ModelMetadata,
    ModelType,
    SortBy,
    Source,
)
from hubloader.core.settings import hubloader_home, redact_text
from hubloader.library import database as _db
from hubloader.library.eviction import CachePolicy
from hubloader.library.index import LibraryIndex, registry_key, registry_state

if TYPE_CHECKING:  # pragma: no cover
    from hubloader.library.scan import ScanReport
    from hubloader.pipeline import Placed
    from hubloader.sources.civitai import CivitAIService
    from hubloader.sources.huggingface import HuggingFaceHubService

__all__ = ["EnrichReport", "ModelRegistry", "SearchResults", "default_db_path", "registry_key", "registry_state"]

log = logging.getLogger(__name__)

DB_FILENAME = "models.db"
REMOTE_SOURCES = (Source.HUGGINGFACE, Source.CIVITAI)


def default_db_path() -> Path:
    return hubloader_home() / DB_FILENAME


class SearchResults(list):
    """The results of :meth:`ModelRegistry.search`, local first; ``warnings`` name sources that failed,
    ``failures`` holds their exceptions (a face that asked one source only may raise it)."""

    def __init__(self, items: Iterable[ModelMetadata] = (), warnings: list[str] | None = None) -> None:
        super().__init__(items)
        self.warnings: list[str] = warnings or []
        self.failures: dict[Source, Exception] = {}


@dataclass
class EnrichReport:
    """What :meth:`ModelRegistry.enrich` did: files hashed, hashes asked of CivitAI, files it recognised."""

    hashed: int = 0
    looked_up: int = 0
    matched: int = 0
    errors: list[str] = field(default_factory=list)


class ModelRegistry:
    """The unified model registry (seed AC 3). Cheap to construct: services start on first use.

    ``index`` holds the records and ``cache`` the cache policy; the methods of both are offered here
    too, under the specification's names.
    """

    def __init__(self, db_path: Path | str | None = None) -> None:
        self.db_path = Path(db_path).expanduser() if db_path else default_db_path()
        self.db = _db.ModelDatabase(self.db_path)
        self.index = LibraryIndex(self.db)
        self.cache = CachePolicy(self.index, lambda: self.hf_service)
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

    # -- the records (hubloader.library.index) --

    def register_model(self, metadata: ModelMetadata, *, managed: bool = False) -> ModelMetadata:
        """Record ``metadata``; ``managed=True`` puts its file under the cache policy (see :class:`LibraryIndex`)."""
        return self.index.register_model(metadata, managed=managed)

    def update_model(self, metadata: ModelMetadata) -> ModelMetadata:
        """Store changed metadata of a model already registered (NotFound otherwise)."""
        return self.index.update_model(metadata)

    def delete_model(self, model: str | ModelMetadata, *, delete_file: bool = False) -> bool:
        """Forget a model (and delete its file if ``delete_file``); False if it was not registered."""
        meta = self.index.find_model(model)
        if meta is None:
            return False
        if delete_file and meta.local_path:
            self.cache.delete_files(meta)
        return self.index.delete_model(meta)

    def get_model(self, model_id: str | ModelMetadata) -> ModelMetadata:
        """The model named by id, row key, name, any hash or AIR; raises NotFound when nothing matches."""
        return self.index.get_model(model_id)

    def find_model(self, ref: str | int | ModelMetadata) -> ModelMetadata | None:
        """Like :meth:`get_model` but returns None when nothing matches."""
        return self.index.find_model(ref)

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

        ``local_only`` lists the usable files on disk; with ``include_unusable`` it also lists the files that
        failed inspection (status ``invalid``, the reason in ``extra["error"]``), so a library view can show them
        as unusable rather than hide them."""
        return self.index.list_models(
            source,
            model_type,
            base_model=base_model,
            local_only=local_only,
            include_unusable=include_unusable,
            limit=limit,
            offset=offset,
        )

    def unusable_files(self) -> dict[str, str]:
        """``{path: reason}`` of the files a scan found unusable (a hostile, truncated or non-JSON header …)."""
        return self.index.unusable_files()

    def mark_used(self, model: str | ModelMetadata) -> ModelMetadata:
        """Count a use (the LRU clock of the cache) and return the model, restoring it from archive if needed."""
        return self.index.mark_used(model)

    touch = mark_used

    @contextmanager
    def using(self, model: str | ModelMetadata) -> Iterator[ModelMetadata]:
        """Hold a model while it is being loaded: counts a use, and no process may evict it meanwhile."""
        with self.index.using(model) as meta:
            yield meta

    def pin(self, model: str | ModelMetadata, pinned: bool = True) -> ModelMetadata:
        """Pin (or unpin) a model: a pinned model is never evicted or archived."""
        return self.index.pin(model, pinned)

    def set_paths(
        self, model: str | ModelMetadata, *, sidecar_path: Path | None = None, preview_path: Path | None = None
    ) -> ModelMetadata:
        """Record where the model's sidecar and preview image were written."""
        return self.index.set_paths(model, sidecar_path=sidecar_path, preview_path=preview_path)

    def restore(self, model: str | ModelMetadata) -> ModelMetadata:
        """Decompress an archived model back to its place."""
        return self.index.restore(model)

    # -- the cache policy (hubloader.library.eviction) --

    @property
    def cache_limit_gb(self) -> float | None:
        """The persisted limit for Hubloader's downloads (settings key ``cache_limit_gb``), None for none."""
        return self.cache.limit_gb

    def set_cache_limit(self, max_size_gb: float | None) -> CacheCleanupReport:
        """Persist the cache limit; nothing is deleted. Returns what :meth:`cleanup_cache` would delete to meet it (a dry run)."""
        return self.cache.set_limit(max_size_gb)

    def enforce_cache_limit(self, *, protect: Iterable[str] = (), dry_run: bool = False) -> CacheCleanupReport:
        """Evict least recently used downloads until they fit the limit; ``protect`` lists row keys to keep."""
        return self.cache.enforce(protect=protect, dry_run=dry_run)

    def cleanup_cache(
        self,
        keep_recent: int = 0,
        max_size_gb: float | None = None,
        dry_run: bool = False,
        *,
        only: Iterable[str] | None = None,
    ) -> CacheCleanupReport:
        """Delete Hubloader's least recently used downloads down to ``max_size_gb`` (default: the cache limit),
        never the ``keep_recent`` most recently used (see
        :meth:`CachePolicy.cleanup <hubloader.library.eviction.CachePolicy.cleanup>`)."""
        return self.cache.cleanup(keep_recent, max_size_gb, dry_run, only=only)

    def list_cached_models(self) -> list[ModelMetadata]:
        """Models with a local copy on disk (``local_path.exists()`` holds for each), least recently used first."""
        return self.cache.list_cached()

    def delete_cached_model(self, model_id: str) -> bool:
        """Delete a model's local copy (a HuggingFace repo or file: its blobs in the HF cache) and keep its record.

        ``model_id`` is a registry id (``owner/repo`` for a repo downloaded by name); one the registry
        does not know is looked up in the HF cache. False when nothing was cached under it.
        """
        meta = self.find_model(model_id)
        if meta is None or meta.local_path is None:
            return self.hf_service.delete_cached_model(model_id)
        self.cache.delete_files(meta)
        self.index.forget_location(registry_state(meta)["pk"])
        return True

    def archive(self, model: str | ModelMetadata) -> ModelMetadata:
        """Compress a cold model into ``<file>.zst`` (see :mod:`hubloader.library.archive`); restored on next use."""
        return self.cache.archive(model)

    # -- registration from the sources --
    # The pipeline and the scan are imported on use (about 0.1 s and 0.3 s): every command opens the registry.

    def register_from_huggingface(self, model_id: str, revision: str = "main") -> ModelMetadata:
        """Download a HuggingFace repo (or one file of it, ``owner/repo/file``) and register it.

        A single-file repo's weight goes to the HuggingFace cache (shared with diffusers) and is linked
        into the host's folder for its type; a diffusers repo stays a snapshot folder in the cache.
        """
        from hubloader.core.folders import active_folders
        from hubloader.pipeline import fetch

        return self._describe(_named_as_asked(fetch(model_id, active_folders(), revision=revision), model_id))

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

        return record(placed, self.index)

    def download_model(self, ref: str | ModelMetadata) -> ModelMetadata:
        """Make a model available locally and count a use: a known local copy is reused, an archived one restored.

        ``ref`` is anything :meth:`get_model` accepts for a model the registry knows (a remote one is
        downloaded from its source), or a new CivitAI/HuggingFace reference (``civitai:123@456``,
        ``owner/repo``, a URL, an AIR). Nothing is evicted: over the cache limit, a warning says so.
        """
        known = self.find_model(ref)
        if known is not None and (known.local_path or registry_state(known).get("status") == "archived"):
            return self.mark_used(known)
        meta = self._fetch(known) if known is not None else self._fetch_reference(str(ref))
        meta = self.mark_used(meta)
        limit = self.cache_limit_gb
        report = self.enforce_cache_limit(dry_run=True)
        held = report.total_size_gb + report.freed_space_gb
        if limit is not None and held > limit:
            log.warning("The cache holds %.2f GB, over its %.2f GB limit; nothing was deleted.", held, limit)
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

        return self._describe(_named_as_asked(fetch(text, active_folders()), text))

    # -- library scan and background enrichment --

    def scan(self, dirs: Iterable[str | Path] | None = None, *, scan_pickles: bool = False) -> ScanReport:
        """Register every model file under ``dirs`` (default: the host's model folders). Incremental:
        a file whose (size, mtime) the registry already recorded is not opened again."""
        from hubloader.core.folders import active_folders
        from hubloader.library.scan import describe_file, scan_paths

        roots = [Path(d) for d in dirs] if dirs is not None else active_folders().existing_dirs()
        known, known_hashes = self.index.scanned_signatures()
        report = scan_paths(roots, known=known, known_hashes=known_hashes, scan_pickles=scan_pickles)
        sourced = self.index.sourced_paths()
        # A file we downloaded that changed keeps its source's metadata.
        found = [
            describe_file(m.local_path, source=self.index.by_key(sourced[str(m.local_path)]))
            if m.local_path is not None and str(m.local_path) in sourced
            else m
            for m in report.models
        ]
        self.index.record_scan(found, report.removed)
        return report

    def enrich(
        self, *, lookup_civitai: bool = True, cancel: threading.Event | None = None, limit: int | None = None
    ) -> EnrichReport:
        """Background work after a scan: hash local files not hashed yet, then ask CivitAI who they are
        (by hash, in batches of at most 100). Call it explicitly (or :meth:`start_enrichment`); never
        run at import or host start-up, because hashing a library reads every byte of it."""
        report = EnrichReport()
        self._hash_unhashed(report, cancel, limit)
        if lookup_civitai:
            self._identify_on_civitai(report)
        return report

    def _hash_unhashed(self, report: EnrichReport, cancel: threading.Event | None, limit: int | None) -> None:
        """Hash the files on disk without a SHA256 (reusing hashes cached for unchanged files) and record them."""
        from hubloader.library.scan import hash_models

        rows = self.index.unhashed(limit)
        keys = {path: key for key, path, *_ in rows}
        known = {
            path: (size, mtime, hashes)
            for _, path, size, mtime, hashes in rows
            if size is not None and mtime is not None
        }
        for path, (size, mtime_ns), hashes in hash_models(list(keys), known=known, cancel=cancel):
            if hashes is None:  # unchanged since hashed: the cached hashes
                self.index.record_hashes(keys[str(path)], dict(known[str(path)][2]))
                continue
            report.hashed += 1
            self.index.record_hashes(keys[str(path)], hashes.civitai(), signature=(size, mtime_ns))

    def _identify_on_civitai(self, report: EnrichReport) -> None:
        """Ask CivitAI which scanned files it knows (by SHA256) and register those with its metadata."""
        from hubloader.library.scan import describe_file

        pending = self.index.unchecked_on_civitai()
        if not pending:
            return
        try:
            found = self.civitai_service.find_by_hashes(list(pending))  # batched by the service (≤ 100 a request)
        except HubloaderError as exc:
            report.errors.append(f"CivitAI lookup failed: {exc}")
            return
        report.looked_up = len(pending)
        for sha, key in pending.items():
            local = self.index.by_key(key)
            if local.local_path is None:  # gone since it was hashed
                continue
            if sha in found:
                report.matched += 1
                self.index.register_model(describe_file(local.local_path, source=found[sha]))
            self.index.mark_civitai_checked(local.local_path)

    def start_enrichment(
        self, *, lookup_civitai: bool = True, cancel: threading.Event | None = None, limit: int | None = None
    ) -> threading.Thread:
        """Run :meth:`enrich` on a daemon thread with its own registry connection; returns the thread."""

        def work() -> None:
            with ModelRegistry(self.db_path) as registry:
                registry._civitai_service = self._civitai_service
                result = registry.enrich(lookup_civitai=lookup_civitai, cancel=cancel, limit=limit)
                log.info("Enrichment: %s", result)

        thread = threading.Thread(target=work, name="hubloader-enrich", daemon=True)
        thread.start()
        return thread

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
        local = [] if remote_only else self.index.search(query, wanted, model_type, base_model, limit)
        results = SearchResults(local)
        remotes = [] if local_only else [s for s in wanted if s in REMOTE_SOURCES]
        answers = self._search_remote(remotes, query, model_type, base_model, limit, sort, nsfw) if remotes else []
        for source, found, error in answers:
            if error is not None:
                _report_failure(results, source, error)
            else:
                _merge(results, [m for m in found if nsfw is not False or not m.nsfw])
        return results

    def _search_remote(
        self,
        sources: list[Source],
        query: str | None,
        model_type: ModelType | None,
        base_model: BaseModel | None,
        limit: int,
        sort: SortBy | None,
        nsfw: bool | None,
    ) -> list[tuple[Source, list[ModelMetadata], Exception | None]]:
        """Each hub's answer, asked in parallel: ``(source, results, None)`` or ``(source, [], the error)``."""

        def one(source: Source) -> tuple[Source, list[ModelMetadata], Exception | None]:
            # A remote source must never break the answer the others (and the local index) give.
            try:
                return source, self._ask_hub(source, query, model_type, base_model, limit, sort, nsfw), None
            except Exception as exc:  # reported to the caller as a warning
                log.debug("%s search failed", source, exc_info=True)
                return source, [], exc

        with ThreadPoolExecutor(max_workers=len(sources), thread_name_prefix="hubloader-search") as pool:
            return list(pool.map(one, sources))

    def _ask_hub(
        self,
        source: Source,
        query: str | None,
        model_type: ModelType | None,
        base_model: BaseModel | None,
        limit: int,
        sort: SortBy | None,
        nsfw: bool | None,
    ) -> list[ModelMetadata]:
        """One hub's search results (HuggingFace or CivitAI); raises what the hub's service raises."""
        if source is Source.HUGGINGFACE:
            wanted = ModelFilter(model_type=model_type, base_model=base_model, sort=sort)
            return list(self.hf_service.search_models(query or "", filter=wanted, limit=limit))
        return list(
            self.civitai_service.search_models(
                query=query or None,
                type=model_type,
                base_model=base_model,
                sort=sort or SortBy.POPULARITY,
                limit=limit,
                nsfw=nsfw,
            )
        )


# --- helpers -----------------------------------------------------------------------------------


def _named_as_asked(placed: Placed, text: str) -> Placed:
    """A HuggingFace repo fetched by name is one row under the repo's id (the seed's contract, as
    ``scan_cache_dir`` lists it), not under the file picked from it."""
    from hubloader.sources.references import parse_reference

    ref = parse_reference(text)
    if placed.source is not None and ref.source is Source.HUGGINGFACE and ref.repo_id and not ref.filename:
        placed.source = dataclasses.replace(placed.source, model_id=ref.repo_id)
    return placed


def _failure_text(exc: Exception) -> str:
    """Our errors say what to do already; anything else is named by its type."""
    return redact_text(str(exc) if isinstance(exc, HubloaderError) else f"{type(exc).__name__}: {exc}")


def _report_failure(results: SearchResults, source: Source, error: Exception) -> None:
    """Note in ``results`` (and the log) that ``source`` could not answer."""
    message = f"{source} search failed: {_failure_text(error)}"
    log.warning("%s", message)
    results.warnings.append(message)
    results.failures[source] = error


def _merge(results: SearchResults, found: list[ModelMetadata]) -> None:
    """Append a hub's results not already in ``results`` (same source id or same SHA256: the first one kept)."""
    seen_ids = {(m.source, m.model_id) for m in results}
    seen_hashes = {h for m in results for h in _sha256s(m)}
    for meta in found:
        hashes = _sha256s(meta)
        if (meta.source, meta.model_id) in seen_ids or hashes & seen_hashes:
            continue
        seen_ids.add((meta.source, meta.model_id))
        seen_hashes |= hashes
        meta.extra["where"] = "local" if meta.local_path else "remote"
        results.append(meta)


def _sha256s(meta: ModelMetadata) -> set[str]:
    return {h for h in _db.hashes_of(meta).values() if len(h) == 64}


def _source_list(sources: Iterable[Source] | None) -> list[Source]:
    if sources is None:
        return [Source.LOCAL, *REMOTE_SOURCES, Source.URL]
    return [Source.parse(s) for s in sources]
