"""The cache policy: how much disk Hubloader's downloads may take, and which files go when it is too much.

Nothing is deleted unless asked: a limit only says how much is over it, and a cleanup (previewed
first by the faces) deletes down to it. Only Hubloader's own downloads are evicted (``managed`` rows), never a user's library found by a
scan, never a pinned model, one being downloaded (a ``.part`` beside it, or its download lock held)
or one a process holds with :meth:`~hubloader.library.index.LibraryIndex.using` (a lease of a live
process). Least recently used go first. The limit is a setting (``cache_limit_gb``) every process reads.
Cold models may instead be archived (compressed in place, restored on their next use).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hubloader.core.errors import HubloaderError
from hubloader.core.metadata import CacheCleanupReport, ModelMetadata, Source
from hubloader.core.settings import load_settings, save_settings
from hubloader.library.archive import archive_file
from hubloader.library.index import LibraryIndex, registry_state

if TYPE_CHECKING:  # pragma: no cover
    from hubloader.sources.huggingface import HuggingFaceHubService

log = logging.getLogger(__name__)

GIB = 1024**3


@dataclass
class _CacheEntry:
    meta: ModelMetadata
    pk: int
    size_bytes: int
    busy: str = ""  # why it may not be deleted now ("pinned", "downloading", "in use"); "" when free


class CachePolicy:
    """Limit, list, clean up and archive Hubloader's downloads recorded in ``index``.

    ``hf_service`` gives the HuggingFace service when a file of its cache must go (on demand, so the
    policy never imports huggingface_hub unless it deletes such a file).
    """

    def __init__(self, index: LibraryIndex, hf_service: Callable[[], HuggingFaceHubService]) -> None:
        self.index = index
        self._hf_service = hf_service

    @property
    def limit_gb(self) -> float | None:
        """The persisted limit for Hubloader's downloads (settings key ``cache_limit_gb``), None for none."""
        value = load_settings().get("cache_limit_gb")
        return float(value) if value not in (None, "") else None

    def set_limit(self, max_size_gb: float | None) -> CacheCleanupReport:
        """Persist the cache limit; nothing is deleted. Returns what a cleanup down to it would delete (a dry run)."""
        if max_size_gb is not None and max_size_gb < 0:
            raise ValueError("max_size_gb must be >= 0 (or None for no limit).")
        save_settings({"cache_limit_gb": max_size_gb})
        return self.enforce(dry_run=True)

    def enforce(self, *, protect: Iterable[str] = (), dry_run: bool = False) -> CacheCleanupReport:
        """Evict least recently used downloads until they fit the limit; ``protect`` lists row keys to keep.

        Called only on an explicit request: setting a limit or downloading never deletes anything.
        """
        limit = self.limit_gb
        entries = self._entries()
        if limit is None:
            return _report(entries, [], dry_run=dry_run)
        return self._evict(entries, budget=int(limit * GIB), keep_count=0, protect=set(protect), dry_run=dry_run)

    def cleanup(
        self,
        keep_recent: int = 0,
        max_size_gb: float | None = None,
        dry_run: bool = False,
        *,
        only: Iterable[str] | None = None,
    ) -> CacheCleanupReport:
        """Delete Hubloader's least recently used downloads until they take at most ``max_size_gb``.

        ``max_size_gb`` defaults to the cache limit (nothing goes when there is none). The
        ``keep_recent`` most recently used downloads are never deleted, whatever the size. Pinned
        models, files being downloaded and models a process holds are never deleted either (they are
        reported in ``kept_models``). ``dry_run`` reports without deleting; ``only`` (row keys, as a
        dry run listed them) restricts the deletion to those.
        """
        if max_size_gb is None:
            max_size_gb = self.limit_gb
        entries = self._entries()
        if max_size_gb is None:
            return _report(entries, [], dry_run=dry_run)
        return self._evict(
            entries,
            budget=int(max_size_gb * GIB),
            keep_count=max(0, keep_recent),
            protect=set(),
            dry_run=dry_run,
            only=None if only is None else set(only),
        )

    def list_cached(self) -> list[ModelMetadata]:
        """Models with a local copy on disk (``local_path.exists()`` holds for each), least recently used first."""
        found = self.index.db.models(
            "m.local_path IS NOT NULL AND m.status IN ('ok', 'missing')",
            order="COALESCE(m.last_used_at, m.created_at) ASC",
        )
        return [m for m in self.index.checked(found) if m.local_path]

    def archive(self, model: str | ModelMetadata) -> ModelMetadata:
        """Compress a cold model into ``<file>.zst`` (see :mod:`hubloader.library.archive`); restored on next use."""
        meta = self.index.get_model(model)
        state = registry_state(meta)
        if not meta.local_path or state["pinned"]:
            raise HubloaderError(
                f"{meta.name} cannot be archived: it is {'pinned' if state['pinned'] else 'not on disk'}.",
                hint="Unpin it first, or download it.",
            )
        if download_in_progress(meta.local_path) or self._lease_alive(state["pk"]):
            raise HubloaderError(f"{meta.name} is in use.", hint="Try again when it is no longer being loaded.")
        archived = archive_file(meta.local_path)
        self.index.set_location(state["pk"], status="archived", local_path=None, archive_path=archived)
        return self.index.by_key(state["key"])

    def _entries(self) -> list[_CacheEntry]:
        """Hubloader's downloads present on disk, least recently used first, each saying why it must stay."""
        rows = self.index.db.query(
            "SELECT m.pk, m.pinned, EXISTS (SELECT 1 FROM model_leases l WHERE l.model_pk = m.pk) "
            "FROM models m WHERE m.managed = 1 AND m.status = 'ok' AND m.local_path IS NOT NULL"
        )
        state = {pk: (pinned, has_lease) for pk, pinned, has_lease in rows}
        entries = []
        for meta in self.list_cached():  # least recently used first
            pk = registry_state(meta)["pk"]
            if pk in state:
                pinned, has_lease = state[pk]
                busy = "pinned" if pinned else self._busy(pk, meta.local_path, has_lease)
                entries.append(_CacheEntry(meta, pk, disk_size(meta.local_path), busy))
        return entries

    def _busy(self, pk: int, path: Path | None, has_lease: bool) -> str:
        """ "in use" when a live process holds row ``pk``, "downloading" when its file is being written, else ""."""
        if has_lease and self._lease_alive(pk):
            return "in use"
        return download_in_progress(path)

    def _lease_alive(self, pk: int) -> bool:
        """True if a live process holds ``pk``; leases of dead processes are dropped."""
        pids = [pid for (pid,) in self.index.db.query("SELECT pid FROM model_leases WHERE model_pk = ?", (pk,))]
        dead = [pid for pid in pids if not _pid_alive(pid)]
        if dead:
            with self.index.db.write() as conn:
                conn.executemany("DELETE FROM model_leases WHERE model_pk = ? AND pid = ?", [(pk, p) for p in dead])
        return len(dead) < len(pids)

    def _evict(
        self,
        entries: list[_CacheEntry],
        *,
        budget: int,
        keep_count: int,
        protect: set[str],
        dry_run: bool,
        only: set[str] | None = None,
    ) -> CacheCleanupReport:
        """Delete the least recently used free entries, sparing the ``keep_count`` most recent, while over ``budget``."""
        victims: list[_CacheEntry] = []
        total = sum(e.size_bytes for e in entries)
        recent = {e.pk for e in entries[len(entries) - keep_count :]} if keep_count else set()
        for entry in entries:
            if total <= budget:
                break
            key = registry_state(entry.meta)["key"]
            if entry.busy or entry.pk in recent or key in protect or (only is not None and key not in only):
                continue
            victims.append(entry)
            total -= entry.size_bytes
        failed = [] if dry_run else [entry for entry in victims if not self._delete(entry)]
        return _report(entries, [e for e in victims if e not in failed], failed, dry_run=dry_run)

    def _delete(self, entry: _CacheEntry) -> bool:
        """Delete an evicted model's file and record it gone; False (logged) when the file would not go."""
        try:
            self.delete_files(entry.meta)
        except (OSError, HubloaderError) as exc:
            log.warning("Could not delete %s: %s", entry.meta.local_path, exc)
            return False
        self.index.forget_location(entry.pk)
        return True

    def delete_files(self, meta: ModelMetadata) -> None:
        """Delete a model's local copy; for HuggingFace, the blob in its cache too."""
        if meta.source is Source.HUGGINGFACE:
            # The path is the HF cache's own snapshot, or a host-folder link to its blob
            # (hubloader.pipeline): deleting only the path would free nothing.
            self._hf_service().delete_cached_model(_hf_cached_name(meta))
        remove_path(meta.local_path)


# --- helpers -----------------------------------------------------------------------------------


def _report(
    entries: list[_CacheEntry], victims: list[_CacheEntry], failed: Sequence[_CacheEntry] = (), *, dry_run: bool
) -> CacheCleanupReport:
    """What an eviction did: ``victims`` deleted (or, in a dry run, to delete), ``failed`` would not go."""
    gone = {e.pk for e in victims}
    kept = [e for e in entries if e.pk not in gone]
    return CacheCleanupReport(
        deleted_count=len(victims),
        freed_space_gb=sum(e.size_bytes for e in victims) / GIB,
        kept_models=[e.meta for e in kept],
        deleted_models=[e.meta for e in victims],
        dry_run=dry_run,
        total_size_gb=sum(e.size_bytes for e in kept) / GIB,
        errors=[f"could not delete {e.meta.local_path}" for e in failed],
    )


def download_in_progress(path: Path | None) -> str:
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


def disk_size(path: Path | None) -> int:
    """Bytes a file, or every file under a folder, takes; 0 when it cannot be read."""
    if path is None:
        return 0
    path = Path(path)
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size
    except OSError:
        return 0


def remove_path(path: Path | None) -> None:
    """Delete a file, a link or a folder (a diffusers snapshot); nothing when it is not there."""
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
