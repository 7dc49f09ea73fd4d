"""One download through a site's shared cache: :class:`SharedCache` and the fetch it runs.

Pull before origin, fetch once per site under a lease, publish after verification: see
:mod:`hubloader.sharedcache.cache` for the whole story and for which cache is in effect.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar, cast

from hubloader.core.errors import Cancelled, HubloaderError, IntegrityError, NotFound
from hubloader.core.metadata import DownloadResult
from hubloader.engine.hashing import file_hashes, hash_chunks, sha256_file
from hubloader.sharedcache.stores import (
    ChunkStaging,
    SharedCacheUnavailable,
    StagedChunk,
    Store,
    object_key,
)

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_LEASE_S = 30.0
#: Ranged reads (of the store's ``read_part`` size) in flight at once when copying an object out.
READ_PARALLEL = 4
#: On S3, a fetcher stages the chunks of files at least this big while it downloads them; smaller files
#: are fetched again whole after a crash, which costs less than staging them.
STAGE_MIN_SIZE = 64 * MiB
#: How often the stager looks for newly written bytes, how many pieces it stores at once, and the
#: smallest fragment of an unfinished part worth a request.
STAGE_POLL_S = 0.1
STAGE_PARALLEL = 4
FRAGMENT_MIN = 2 * MiB
T = TypeVar("T")
R = TypeVar("R")

OriginFetch = Callable[[Path], DownloadResult]
Progress = Callable[[Any], None]


@dataclass
class SharedCache:
    """A site's shared cache. ``origin=False`` makes it pull-only (``hubloader cache pull``)."""

    store: Store
    fallback: str = "origin"
    lease_s: float = DEFAULT_LEASE_S
    origin: bool = True
    #: Corrupt objects met and what was done about them, one line each (also logged as warnings).
    problems: list[str] = field(default_factory=list)
    _checked: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return self.store.url

    def fetch(
        self,
        sha256: str,
        dest: Path | str,
        origin_fetch: OriginFetch | None,
        *,
        size: int | None = None,
        record: dict[str, Any] | None = None,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> DownloadResult:
        """``dest`` with the bytes whose SHA256 is ``sha256``: from the cache, or fetched once for the
        whole site by ``origin_fetch(target)`` (the download engine) and published."""
        sha256, dest = sha256.lower(), Path(dest)
        try:
            if not self._checked:
                self.store.check()  # an unmounted share must not be silently re-created as an empty folder
                self._checked = True
            return _Fetch(self, sha256, dest, origin_fetch, size, record or {}, progress, cancel).run()
        except SharedCacheUnavailable as exc:
            if self.fallback == "fail" or origin_fetch is None:
                raise
            logger.warning("shared cache not used for %s: %s Downloading from the origin.", dest.name, exc.message)
            return origin_fetch(dest)

    def push(self, path: Path | str, record: dict[str, Any] | None = None) -> tuple[str, bool]:
        """Publish a local file (hashed here); returns (sha256, whether it was new to the cache)."""
        path = Path(path)
        sha256 = sha256_file(path)
        if self.store.object_size(sha256) is not None:
            return sha256, False
        info = {"file_name": path.name, "source": "local", **(record or {})}
        self.store.publish(sha256, path, _record(sha256, path.stat().st_size, info))
        return sha256, True

    def contains(self, sha256: str) -> bool:
        return self.store.object_size(sha256.lower()) is not None


# --- one fetch ----------------------------------------------------------------------------------


class _Fetch:
    def __init__(
        self,
        cache: SharedCache,
        sha256: str,
        dest: Path,
        origin_fetch: OriginFetch | None,
        size: int | None,
        record: dict[str, Any],
        progress: Progress | None,
        cancel: threading.Event | None,
    ) -> None:
        self.cache, self.store = cache, cache.store
        self.sha256, self.dest, self.size = sha256, dest, size
        self.origin_fetch, self.record = origin_fetch, record
        self.progress, self.cancel = progress, cancel or threading.Event()
        self.started = time.monotonic()
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.shown = f"{self.store.url}/{object_key(sha256)}"

    def run(self) -> DownloadResult:
        local = self._already_here()
        if local is not None:
            return local
        while True:
            self._check_cancel()
            copied = self._copy_from_cache()
            if copied is not None:
                return copied
            lease = self._elect()
            if lease is None:
                continue  # the object appeared, or the lease went away: look again
            with lease:
                if self.store.object_size(self.sha256) is not None:
                    continue  # published between our look and our election
                result = self._fetch_from_origin()
            if result is not None:
                return result

    def _already_here(self) -> DownloadResult | None:
        """A verified file already at ``dest``: no cache traffic at all."""
        if not self.dest.is_file() or (self.size is not None and self.dest.stat().st_size != self.size):
            return None
        if file_hashes(self.dest)["sha256"] != self.sha256:
            return None
        size = self.dest.stat().st_size
        return DownloadResult(
            self.dest, self.sha256, size, url=str(self.dest), reused=True, hashes={"sha256": self.sha256}
        )

    # -- election ----------------------------------------------------------------------------

    def _elect(self) -> _Lease | None:
        """Become the fetcher, or wait for the one who is. Returns our lease, or None when there is
        something new to look at (the object was published; the lease was released)."""
        body = self._lease_body()
        may_fetch = self.origin_fetch is not None and self.cache.origin
        token = self.store.lease_create(self.sha256, body) if may_fetch else None
        if token is not None:
            return _Lease(self, token)
        seen, since, waited = "", time.monotonic(), False
        while True:
            self._check_cancel()
            if not waited:
                self._emit("waiting", message="another worker is fetching it from the origin")
                waited = True
            time.sleep(_poll_interval(self.cache.lease_s))
            # One request per poll: the lease goes away once the object is published (or given up).
            current = self.store.lease_read(self.sha256)
            if current is None:
                if may_fetch or self.store.object_size(self.sha256) is not None:
                    return None
                raise self._not_in_cache()
            held, token = current
            if token != seen:
                seen, since = token, time.monotonic()
                continue
            ttl = float(held.get("ttl_s") or self.cache.lease_s)
            if time.monotonic() - since > ttl:
                if not may_fetch:
                    raise self._not_in_cache()
                logger.warning(
                    "%s: the lease of %s was not renewed for %.0f s; taking over.",
                    self.dest.name,
                    held.get("holder"),
                    ttl,
                )
                token = self.store.lease_replace(self.sha256, {**body, "took_over_from": held.get("holder")}, token)
                if token is not None:
                    return _Lease(self, token)
                seen, since = "", time.monotonic()  # someone else took it first

    def _lease_body(self) -> dict[str, Any]:
        return {
            "holder": self.holder,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "ttl_s": self.cache.lease_s,
            "file_name": self.record.get("file_name") or self.dest.name,
            "renewed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    # -- origin --------------------------------------------------------------------------------

    def _fetch_from_origin(self) -> DownloadResult | None:
        """Download (into the share's staging area, or into ``dest``), then publish. Returns the result
        when the bytes are already at ``dest``; None when the caller should copy from the cache."""
        assert self.origin_fetch is not None
        staging = self.store.staging_path(self.sha256)
        if staging is not None:
            result = self._verified(self.origin_fetch(staging), staging)
        else:
            result = self._fetch_staging_chunks(cast(ChunkStaging, self.store))
        target = staging or self.dest
        record = _record(self.sha256, result.size_bytes, {"file_name": self.dest.name, **self.record})
        try:
            self.store.publish(self.sha256, target, record)
        except SharedCacheUnavailable as exc:
            if staging is not None:
                raise
            logger.warning("%s: fetched, but not published to the shared cache: %s", self.dest.name, exc.message)
        return None if staging is not None else result

    def _fetch_staging_chunks(self, chunks: ChunkStaging) -> DownloadResult:
        """Download into ``dest`` while staging its finished chunks in the store; first take up the chunks
        a fetcher that died left there. Should those bytes fail the final check, start once more clean."""
        assert self.origin_fetch is not None
        staged = self._resume_from_staged(chunks)
        try:
            with _Stager(self, chunks, staged):
                return self._verified(self.origin_fetch(self.dest), self.dest)
        except IntegrityError:
            if not staged:
                raise
            chunks.clear_staged(self.sha256)
            self._problem(f"chunks staged in {self.store.url} for {self.dest.name} were wrong; fetching it again")
            with _Stager(self, chunks, []):
                return self._verified(self.origin_fetch(self.dest), self.dest)

    def _resume_from_staged(self, chunks: ChunkStaging) -> list[StagedChunk]:
        """Copy the chunks a previous fetcher staged into our ``.part``: the origin is asked only for the rest."""
        from hubloader.engine.download import seed_partial

        staged = [c for c in chunks.staged_chunks(self.sha256) if self.size in (None, c.file_size)]
        if not staged:
            return []
        size = max(staged, key=lambda c: c.end).file_size
        step = chunks.chunk_size(size)
        staged = [c for c in staged if c.file_size == size]
        whole = {c.start for c in staged if c.is_part(step)}
        # Fragments of a part that was later staged whole are not read again.
        staged = [c for c in staged if c.is_part(step) or c.start // step * step not in whole]
        self._emit("downloading", 0, size, message="resuming from the chunks another worker staged")
        pieces = ((c.start, data) for c, data in _in_order(chunks.read_chunk, staged) if data is not None)
        seeded = seed_partial(self.dest, size=size, sha256=self.sha256, pieces=pieces)
        logger.info("%s: resumed %d bytes from %s; the origin sends the rest", self.dest.name, seeded, self.store.url)
        return staged

    def _verified(self, result: DownloadResult, target: Path) -> DownloadResult:
        if result.sha256.lower() != self.sha256:
            target.unlink(missing_ok=True)
            raise IntegrityError(
                f"{self.dest.name}: the origin sent SHA256 {result.sha256[:12]}…, expected {self.sha256[:12]}….",
                expected=self.sha256,
                actual=result.sha256,
            )
        return result

    # -- pulling -------------------------------------------------------------------------------

    def _copy_from_cache(self) -> DownloadResult | None:
        """Copy the object to ``dest``, verifying while copying. None when it is absent or was corrupt."""
        size = self.store.object_size(self.sha256)
        if size is None:
            return None
        if self.size is not None and size != self.size:
            self._quarantine(f"it has {size} bytes, the file has {self.size}")
            return None
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.dest.parent, prefix=f".{self.dest.name}.", suffix=".shared-part")
        try:
            with os.fdopen(fd, "wb") as out:
                digest = self._copy_parts(size, out)
            if digest != self.sha256:
                Path(tmp).unlink(missing_ok=True)
                self._quarantine(f"its bytes hash to {digest[:12]}…")
                return None
            os.replace(tmp, self.dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._emit("done", size, size)
        return DownloadResult(
            self.dest,
            self.sha256,
            size,
            url=self.shown,
            elapsed_s=time.monotonic() - self.started,
            hashes={"sha256": self.sha256},
        )

    def _copy_parts(self, size: int, out: Any) -> str:
        """Ranged reads in parallel, written and hashed strictly in order (memory: a few parts)."""
        return hash_chunks(self._written_parts(size, out), digests=("sha256",)).sha256

    def _written_parts(self, size: int, out: Any) -> Iterator[bytes]:
        """The object's parts in order, each written to ``out`` before it is handed on to be hashed."""
        step = self.store.read_part
        ranges = [(start, min(start + step, size)) for start in range(0, size, step)]
        done = 0
        for _, chunk in _in_order(lambda r: self.store.read_range(self.sha256, *r), ranges):
            self._check_cancel()
            out.write(chunk)
            yield chunk
            done += len(chunk)
            self._emit("downloading", done, size)

    def _quarantine(self, why: str) -> None:
        place = self.store.quarantine(self.sha256, why)
        self._problem(
            f"shared cache object {self.shown} did not match its name ({why}); "
            f"{'moved to ' + place if place else 'removed'}, fetching it again"
        )

    def _problem(self, line: str) -> None:
        self.cache.problems.append(line)
        logger.warning("%s", line)
        self._emit("retrying", message=line)

    # -- helpers -------------------------------------------------------------------------------

    def _not_in_cache(self) -> NotFound:
        return NotFound(
            f"{self.dest.name} (SHA256 {self.sha256[:12]}…) is not in the shared cache {self.store.url}.",
            hint="It gets there when any machine using this shared cache downloads it once.",
        )

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled(f"Cancelled: {self.dest.name}.")

    def _emit(self, state: str, done: int = 0, total: int | None = None, message: str = "") -> None:
        if self.progress is None:
            return
        from hubloader.engine.download import DownloadProgress

        self.progress(
            DownloadProgress(self.dest, self.shown, state, bytes_done=done, total=total or self.size, message=message)
        )


class _Lease:
    """Our lease while we fetch: renewed every third of its TTL by a thread, released on exit."""

    def __init__(self, fetch: _Fetch, token: str) -> None:
        self.fetch, self.token = fetch, token
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._renew, name="hubloader-lease", daemon=True)

    def __enter__(self) -> _Lease:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        try:
            self.fetch.store.lease_delete(self.fetch.sha256, self.token)
        except (HubloaderError, OSError) as error:  # it expires anyway
            logger.info("lease for %s not released: %s", self.fetch.sha256[:12], error)

    def _renew(self) -> None:
        store, sha256 = self.fetch.store, self.fetch.sha256
        while not self.stop.wait(self.fetch.cache.lease_s / 3):
            try:
                token = store.lease_replace(sha256, self.fetch._lease_body(), self.token)
            except (HubloaderError, OSError) as exc:
                logger.warning("could not renew the lease for %s: %s", self.fetch.dest.name, exc)
                continue
            if token is None:
                logger.warning("%s: another worker took over our lease; it will publish the same bytes", sha256[:12])
                return
            self.token = token


class _Stager:
    """While the fetcher downloads into ``dest``, copies its ``.part`` into the store (S3) piece by piece:
    each finished part of the final object whole, and the growing run of an unfinished part as fragments
    of at least ``FRAGMENT_MIN``. A worker that takes over after a crash resumes from those instead of
    from the origin; publishing turns the whole parts into the object by server-side copies."""

    def __init__(self, fetch: _Fetch, chunks: ChunkStaging, already: list[StagedChunk]) -> None:
        self.fetch, self.chunks = fetch, chunks
        # parts staged whole (the publishable ones)
        self.whole = {c.start for c in already if c.is_part(chunks.chunk_size(c.file_size))}
        self.frontier: dict[int, int] = {}  # part start → end of its run staged as fragments
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="hubloader-stage", daemon=True)

    def __enter__(self) -> _Stager:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def _run(self) -> None:
        while not self.stop.wait(STAGE_POLL_S):
            try:
                self._stage_new_bytes()
            except (HubloaderError, OSError) as exc:
                logger.warning(
                    "%s: not staged in the shared cache (%s); a worker taking over would start again.",
                    self.fetch.dest.name,
                    exc,
                )
                return

    def _stage_new_bytes(self) -> None:
        from hubloader.engine.download import partial_ranges

        size, written = partial_ranges(self.fetch.dest)
        if size is None or size < STAGE_MIN_SIZE:
            return
        step = self.chunks.chunk_size(size)
        pieces = [
            piece
            for low, high in written
            for part in range(low // step * step, high, step)
            if (piece := self._next_piece(part, min(part + step, size), max(low, part), min(high, part + step)))
        ]
        # Several puts at once: one stream to the store must not fall behind the origin's connections.
        with ThreadPoolExecutor(STAGE_PARALLEL, thread_name_prefix="hubloader-stage") as pool:
            list(pool.map(lambda piece: self._stage(size, *piece), pieces))

    def _next_piece(self, part: int, part_end: int, low: int, high: int) -> tuple[int, int] | None:
        """What to stage of the written run ``[low, high)`` inside the part ``[part, part_end)``, if anything."""
        if part in self.whole:
            return None
        if low == part and high == part_end:
            return part, part_end
        start = self.frontier.get(part, low)
        if not low <= start < high or high - start < FRAGMENT_MIN:
            return None  # too little new, or a second run in this part (it waits for the part to fill)
        return start, high

    def _stage(self, size: int, start: int, end: int) -> None:
        from hubloader.engine.download import read_partial

        data = None if self.stop.is_set() else read_partial(self.fetch.dest, start, end)
        if data is None:
            return
        self.chunks.stage_chunk(self.fetch.sha256, size, start, data)
        step = self.chunks.chunk_size(size)
        if StagedChunk("", size, start, end, "").is_part(step):
            self.whole.add(start)
        else:
            self.frontier[start // step * step] = end


def _in_order(read: Callable[[T], R], items: list[T]) -> Iterator[tuple[T, R]]:
    """``read(item)`` for every item, READ_PARALLEL at a time, yielded in the items' order with only a few
    results held at once (memory: a few parts)."""
    pending: deque[tuple[T, Future[R]]] = deque()
    queue = deque(items)
    with ThreadPoolExecutor(READ_PARALLEL, thread_name_prefix="hubloader-pull") as pool:
        try:
            while queue or pending:
                while queue and len(pending) < READ_PARALLEL * 2:
                    item = queue.popleft()
                    pending.append((item, pool.submit(read, item)))
                item, future = pending.popleft()
                yield item, future.result()
        finally:
            for _, future in pending:
                future.cancel()


def _poll_interval(lease_s: float) -> float:
    """About once per renewal (the holder renews every third of the TTL): a waiter polling faster only
    sees the same token again. Every waiter's poll is a request to the store that the fetcher stages
    its chunks in, so polls it cannot learn from slow the staging down and leave more for a taker to
    fetch again from the origin. At most 2 s, to start copying soon after publication; jittered."""
    return min(2.0, lease_s / 3) * random.uniform(0.7, 1.3)


def _record(sha256: str, size: int, info: dict[str, Any]) -> dict[str, Any]:
    return {
        "sha256": sha256,
        "size": size,
        "file_name": info.get("file_name", ""),
        "source": info.get("source", ""),
        "url": info.get("url", ""),
        "air": info.get("air", ""),
        "first_fetched": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fetched_by": socket.gethostname(),
    }
