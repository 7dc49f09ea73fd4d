"""The download engine: every file Hubloader fetches (CivitAI, HuggingFace, plain URLs) goes through here.

What it guarantees, and how:

* **Atomic placement.** Bytes go to ``<dest>.part`` next to the target (same filesystem); only a
  complete, verified file is renamed to ``dest`` with ``os.replace``. ``<dest>.part.json`` records
  which byte ranges of the ``.part`` are written, the file's size and its validators (ETag /
  Last-Modified), so any later process can resume.
* **Resume** with ``Range`` + ``If-Range`` (or, without a validator, only when the expected SHA256
  will check the result). A server that answers 200 to a ranged request ignores Range (or the file
  changed): the ``.part`` is dropped and the file is fetched again in one stream. A signed URL that
  expired in between (401/403/410 from the storage host) is re-resolved through ``resolve_url``
  (or by re-requesting the source URL, which redirects to a fresh signed URL).
* **Parallel ranged connections** for large files: start with one, double while total throughput
  keeps rising by 15% or more, up to the per-service cap (settings ``max_connections`` and
  ``max_connections_per_host``, CivitAI 4); idle connections steal half of the largest remaining
  segment. Small files and servers without Range use a single stream.
* **Hash while downloading, no second read.** SHA256 (and BLAKE3 when the source publishes it) is
  fed strictly in file order by a hashing thread (:class:`_HashCursor`). Bytes that arrive in
  order are hashed straight from memory; bytes written ahead of the hashing point (other
  connections) are read back from the page cache when the hashing point reaches them. Python's
  hash objects cannot be saved to disk, so the cheapest correct design for a resume in a *new*
  process is to hash the bytes already in the ``.part`` once, from disk, when the transfer starts
  (a local read, overlapped with the network transfer); within one process (dropped connections,
  retries, re-resolved URLs) the hash state is kept and nothing is re-read.
* **Sniffing**: the first bytes must look like the expected format (:mod:`hubloader.engine.sniff`);
  HTML/JSON answers are refused with the server's own reason.
* **Retries** with exponential backoff and jitter for connection errors and 5xx; 429 honours
  ``Retry-After``; requests to the source host go through the service's shared rate limiter.
* **One download per target**: a file lock (:func:`lock_path`, under ``HUBLOADER_HOME/locks`` so
  nothing but the model and its ``.part`` is ever written into the user's model folders)
  serialises threads and processes; whoever waited returns the file the first caller finished. A
  file already at ``dest`` with the expected hash is not downloaded again.
* **Auth hygiene**: the token goes in an ``Authorization`` header to the source URL's own origin
  only; redirects are followed by hand and the header is dropped for any other origin. URLs in
  messages are redacted.
* **Bounded memory**: at most ~2 MiB buffered per connection and 32 MiB queued for hashing.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import errno
import hashlib
import json
import logging
import os
import random
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from hubloader.core import errors
from hubloader.core.metadata import DownloadResult
from hubloader.core.settings import Secret, hubloader_home, load_settings, redact_text, redact_url
from hubloader.core.units import human_size
from hubloader.engine.ratelimit import limiter_for, retry_after_seconds
from hubloader.engine.sniff import HEAD_BYTES, check_head, server_reason

if TYPE_CHECKING:
    import aiohttp

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
#: Below this size one stream is as fast as several and costs the server less.
PARALLEL_MIN_SIZE = 32 * MiB
#: A segment is split only if both halves would be at least this big.
MIN_SPLIT = 8 * MiB
#: How long the adaptive controller measures throughput before deciding to add connections.
RAMP_WINDOW_S = 0.3
#: Record progress in ``.part.json`` after this many new bytes (bounds what a kill -9 costs).
CHECKPOINT_BYTES = 8 * MiB
#: Bytes the hashing thread may hold in memory before falling back to reading the page cache.
HASH_QUEUE_BYTES = 32 * MiB
READ_BUFSIZE = 1 * MiB
#: Bytes gathered per write and hash step: few system calls and thread hand-offs per second.
READ_BATCH = 2 * MiB
MAX_REDIRECTS = 10
MAX_RESOLVES = 3
MAX_RESTARTS = 2
PROGRESS_INTERVAL_S = 0.2
_REDIRECTS = (301, 302, 303, 307, 308)
_EXPIRED = (400, 401, 403, 410)
_STATES = ("waiting", "starting", "downloading", "retrying", "verifying", "done", "reused", "cancelled", "failed")


@dataclass
class DownloadProgress:
    """One progress event. ``state`` is one of: waiting (another caller holds the file), starting,
    downloading, retrying, verifying, done, reused, cancelled, failed."""

    path: Path
    url: str  # redacted
    state: str
    bytes_done: int = 0
    total: int | None = None
    speed: float = 0.0  # bytes/s over the last seconds
    eta_s: float | None = None
    connections: int = 0
    resumed_from: int = 0
    message: str = ""

    @property
    def fraction(self) -> float | None:
        return self.bytes_done / self.total if self.total else None


class TqdmProgress:
    """A progress callback drawing a tqdm bar (the CLI's); closes itself on a final state."""

    def __init__(self, desc: str | None = None, **tqdm_kwargs: Any) -> None:
        self.desc = desc
        self.tqdm_kwargs = tqdm_kwargs
        self.bar: Any = None

    def __call__(self, event: DownloadProgress) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=event.total,
                initial=event.bytes_done,
                desc=self.desc or event.path.name,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                **self.tqdm_kwargs,
            )
        if event.total is not None and self.bar.total != event.total:
            self.bar.total = event.total
        self.bar.update(event.bytes_done - self.bar.n)
        if event.state not in ("downloading", "starting"):
            self.bar.set_postfix_str(event.state, refresh=False)
        if event.state in ("done", "reused", "cancelled", "failed"):
            self.bar.close()


# ----------------------------------------------------------------------------------------------
# Public entry points


async def adownload_file(
    url: str,
    dest: Path | str,
    *,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    expected_blake3: str | None = None,
    token: Secret | None = None,
    service: str = "url",
    resolve_url: Callable[[], str] | None = None,
    expect: str = "model",
    progress: Callable[[DownloadProgress], None] | None = None,
    cancel: threading.Event | None = None,
    max_connections: int | None = None,
    retries: int = 5,
    hash_while_downloading: bool = True,
) -> DownloadResult:
    """Download ``url`` to ``dest`` (see the module docstring for the guarantees).

    ``max_connections`` overrides the per-service cap from the settings; ``retries`` is per failure
    streak (a connection that made progress starts counting again). ``hash_while_downloading=False``
    exists for benchmarks only: the result's ``sha256`` is then empty and nothing is verified.
    """
    _check_url(url)
    job = _Download(
        url=url,
        dest=Path(dest),
        expected_sha256=(expected_sha256 or "").lower() or None,
        expected_size=expected_size,
        expected_blake3=(expected_blake3 or "").lower() or None,
        token=token or None,
        service=service,
        resolve_url=resolve_url,
        expect=expect,
        progress=progress,
        cancel=cancel or threading.Event(),
        max_connections=max_connections or _connection_cap(service),
        retries=retries,
        hashing=hash_while_downloading,
    )
    return await job.run()


def download_file(url: str, dest: Path | str, **kwargs: Any) -> DownloadResult:
    """Blocking :func:`adownload_file`. Inside a running event loop (ComfyUI routes, Gradio) it runs
    the download on a private loop in a helper thread, so it never nests loops."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(adownload_file(url, dest, **kwargs))
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hubloader-download") as pool:
        return pool.submit(asyncio.run, adownload_file(url, dest, **kwargs)).result()


def lock_path(dest: Path | str) -> Path:
    """The file lock that allows one download of ``dest`` at a time: ``HUBLOADER_HOME/locks/<sha256>.lock``.

    It lives in one place outside the model folders (a lock beside every model clutters the host's
    lists and outlives the download). The name hashes the absolute target with its folder's links
    resolved, so every spelling of one destination shares a lock, and a target that is itself a link
    (a HuggingFace cache file linked into a host folder) keeps the same lock before and after.
    The ComfyUI node, the A1111 tab and the command line share ``HUBLOADER_HOME`` by default; two
    processes given different ``HUBLOADER_HOME`` do not share locks and may download one target at once.
    """
    target = Path(dest).expanduser().absolute()
    key = os.path.join(os.path.realpath(target.parent), target.name)
    return hubloader_home() / "locks" / f"{hashlib.sha256(key.encode('utf-8', 'surrogateescape')).hexdigest()}.lock"


def tqdm_progress(desc: str | None = None, **tqdm_kwargs: Any) -> TqdmProgress:
    return TqdmProgress(desc, **tqdm_kwargs)


def file_hashes(path: Path, *, blake3: bool = False) -> dict[str, str]:
    """SHA256 (and BLAKE3) of a file on disk, remembered for an unchanged file within this process."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    known = _hash_memo.get(key)
    if known is not None and (not blake3 or "blake3" in known):
        return known
    hashers = _new_hashers(blake3)
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * MiB):
            for hasher in hashers.values():
                hasher.update(chunk)
    known = {name: hasher.hexdigest() for name, hasher in hashers.items()}
    _hash_memo[key] = known
    return known


def partial_ranges(dest: Path | str) -> tuple[int | None, list[tuple[int, int]]]:
    """An unfinished download of ``dest``: the file's size (None until known) and the byte ranges of its
    ``.part`` already written, as last recorded for a resume (every ``CHECKPOINT_BYTES``). Safe to read
    while the download runs in another thread or process."""
    state = _PartState.load(_meta_path(Path(dest)))
    return (None, []) if state is None else (state.size, list(state.done))


def read_partial(dest: Path | str, start: int, end: int) -> bytes | None:
    """Bytes ``[start, end)`` of ``dest``'s unfinished download, or None unless all of them are written.
    The record is checked again after reading: a download that restarted from zero meanwhile (its
    server ignored Range) truncated the ``.part`` under us."""
    dest = Path(dest)
    if not _covered(dest, start, end):
        return None
    try:
        with open(_part_path(dest), "rb") as fh:
            data = os.pread(fh.fileno(), end - start, start)
    except FileNotFoundError:
        return None  # finished (renamed to dest) or discarded meanwhile
    return data if len(data) == end - start and _covered(dest, start, end) else None


def seed_partial(dest: Path | str, *, size: int, sha256: str, pieces: Iterable[tuple[int, bytes]]) -> int:
    """Start (or extend) ``dest``'s ``.part`` with byte ranges fetched elsewhere (a site cache's staged
    chunks), so that the next ``download_file(..., expected_sha256=sha256)`` fetches only the gaps. These
    bytes pass the final SHA256 check like any others. Returns the number of bytes written."""
    from filelock import FileLock

    dest = Path(dest)
    part, meta = _part_path(dest), _meta_path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock_file = lock_path(dest)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with FileLock(str(lock_file)):
        state = _trusted_part(part, meta, sha256, size)
        if state is None:
            part.unlink(missing_ok=True)
            state = _PartState(size=size, sha256=sha256)
        state.size, state.sha256 = size, sha256
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            for offset, data in pieces:
                if not state.done.covers(offset, offset + len(data)):
                    _pwrite_all(fd, data, offset)
                    state.done.add(offset, offset + len(data))
                    written += len(data)
                    state.save(meta)  # a crash while seeding keeps what was copied
        finally:
            os.close(fd)
    return written


# ----------------------------------------------------------------------------------------------
# Helpers


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _meta_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part.json")


def _covered(dest: Path, start: int, end: int) -> bool:
    state = _PartState.load(_meta_path(dest))
    return state is not None and state.done.covers(start, end)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _trusted_part(part: Path, meta: Path, sha256: str | None, size: int | None) -> _PartState | None:
    """The record of a ``.part`` left by an earlier attempt, if its bytes can be kept for this download:
    it has a validator for If-Range, or the expected SHA256 will check the result anyway."""
    if not part.exists():
        return None
    state = _PartState.load(meta)
    if state is None and sha256:
        # A .part without our record (older tool, or killed before the first record): its bytes are
        # a prefix; the final SHA256 check guards against anything wrong in it.
        state = _PartState(size=size, sha256=sha256)
        state.done.add(0, part.stat().st_size)
    trusted = (
        state is not None
        and (state.validator or sha256)
        and (not sha256 or state.sha256 in (None, sha256))
        and (size is None or state.size in (None, size))
    )
    if not trusted or state is None:
        return None
    state.done.clip(part.stat().st_size)
    state.sha256 = state.sha256 or sha256
    return state


_hash_memo: dict[tuple[str, int, int, int], dict[str, str]] = {}


def _remember_hashes(path: Path, hashes: dict[str, str]) -> None:
    stat = path.stat()
    _hash_memo[(str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)] = dict(hashes)


def _new_hashers(blake3: bool) -> dict[str, Any]:
    hashers: dict[str, Any] = {"sha256": hashlib.sha256()}
    if blake3:
        from blake3 import blake3 as new_blake3

        hashers["blake3"] = new_blake3()
    return hashers


def _connection_cap(service: str) -> int:
    settings = load_settings()
    per_host = settings.get("max_connections_per_host") or {}
    try:
        return max(1, int(per_host.get(service) or settings.get("max_connections") or 8))
    except (TypeError, ValueError):
        return 8


def _check_url(url: str) -> None:
    """Refuse at once what is not an http(s) address (aiohttp would fail it as a network error, retried)."""
    parts = urlsplit(str(url).strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise errors.InvalidReference(
            f"Not an http(s) download URL: {redact_url(str(url))}.",
            hint="Give an http:// or https:// address (a hub reference such as civitai:1@2 goes to fetch, not here).",
        )


def _invalid_url_errors(aiohttp: Any) -> tuple[type[BaseException], ...]:
    """aiohttp's "this URL cannot be fetched" exceptions; the non-http one exists only since 3.10."""
    names = ("InvalidURL", "NonHttpUrlClientError")
    return tuple(getattr(aiohttp, name) for name in names if hasattr(aiohttp, name))


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes a-b/total`` → (a, total); ``bytes */total`` → (None, total)."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[6:].partition("/")
    start = int(span.split("-")[0]) if span.strip() != "*" else None
    return start, int(total) if total.strip().isdigit() else None


class _HostSlots:
    """Extra (2nd, 3rd …) connections per service and host, counted across all downloads of the process,
    so several parallel downloads from CivitAI stay within its polite cap together."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: dict[tuple[str, str], int] = {}

    def try_take(self, key: tuple[str, str], limit: int) -> bool:
        with self._lock:
            if self._used.get(key, 0) >= limit:
                return False
            self._used[key] = self._used.get(key, 0) + 1
            return True

    def give_back(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._used[key] -= 1


_host_slots = _HostSlots()


class _Intervals:
    """Sorted, merged half-open byte ranges ``[start, end)``."""

    def __init__(self, items: list[list[int]] | None = None) -> None:
        self._items: list[list[int]] = []
        for start, end in items or []:
            self.add(start, end)

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        items = self._items
        i = bisect.bisect_left(items, [start, start])
        if i > 0 and items[i - 1][1] >= start:
            i -= 1
        j = i
        while j < len(items) and items[j][0] <= end:
            start, end = min(start, items[j][0]), max(end, items[j][1])
            j += 1
        items[i:j] = [[start, end]]

    def pop_from(self, start: int) -> int | None:
        """Remove the range beginning exactly at ``start``; return its end."""
        if self._items and self._items[0][0] == start:
            return self._items.pop(0)[1]
        return None

    def clip(self, size: int) -> None:
        self._items = [[s, min(e, size)] for s, e in self._items if s < size]

    def total(self) -> int:
        return sum(e - s for s, e in self._items)

    def covers(self, start: int, end: int) -> bool:
        return any(s <= start and end <= e for s, e in self._items)

    def gaps(self, size: int) -> list[tuple[int, int]]:
        found, pos = [], 0
        for start, end in self._items:
            if start > pos:
                found.append((pos, start))
            pos = max(pos, end)
        if pos < size:
            found.append((pos, size))
        return found

    def to_list(self) -> list[list[int]]:
        return [list(item) for item in self._items]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(s, e) for s, e in self._items])


class _HashCursor:
    """Hashes the ``.part`` strictly in file order on a thread of its own.

    The event loop reports each write with :meth:`written` (from that thread only). Writes at the
    hashing point are queued as the bytes themselves (no copy, no read); writes ahead of it wait in
    ``pending`` and are queued as ranges to read back with ``pread`` (from the page cache, since they
    were just written) once the hashing point reaches them. When the in-memory queue is full, bytes
    are queued as ranges too, so memory stays bounded whatever the hashing speed.
    """

    def __init__(self, fd: int, *, blake3: bool) -> None:
        self._fd = fd
        self._hashers = _new_hashers(blake3)
        self._queue: deque[list[bytes] | tuple[int, int] | None] = deque()
        self._ready = threading.Condition()
        self._queued_bytes = 0
        self._planned = 0  # everything before this offset is queued
        self.hashed = 0  # bytes hashed so far (written by the hashing thread only)
        self._pending = _Intervals()
        self._stop = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="hubloader-hash", daemon=True)
        self._thread.start()

    def written(self, offset: int, length: int, data: list[bytes] | None = None) -> None:
        if offset != self._planned:
            self._pending.add(offset, offset + length)
            return
        end = offset + length
        with self._ready:
            if data is not None and self._queued_bytes + length <= HASH_QUEUE_BYTES:
                self._queue.append(data)
                self._queued_bytes += length
            else:
                self._queue.append((offset, end))
            further = self._pending.pop_from(end)
            if further is not None:
                self._queue.append((end, further))
                end = further
            self._ready.notify()
        self._planned = end

    def lag(self) -> int:
        """In-order bytes received but not hashed yet: it grows only when hashing is slower than the network."""
        return self._planned - self.hashed

    def finish(self) -> dict[str, str]:
        """Wait until everything queued is hashed; the hex digests."""
        self._put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return {name: hasher.hexdigest() for name, hasher in self._hashers.items()}

    def abandon(self) -> None:
        """Stop without finishing (the file is kept for a resume; its hash will be recomputed)."""
        self._stop = True
        self._put(None)
        self._thread.join()

    def _put(self, item: None) -> None:
        with self._ready:
            self._queue.append(item)
            self._ready.notify()

    def _run(self) -> None:
        update = [hasher.update for hasher in self._hashers.values()]
        try:
            while True:
                with self._ready:
                    while not self._queue:
                        self._ready.wait()
                    item = self._queue.popleft()
                if item is None or self._stop:
                    return
                if isinstance(item, list):
                    for block in item:
                        for fn in update:
                            fn(block)
                        self.hashed += len(block)
                    with self._ready:
                        self._queued_bytes -= sum(map(len, item))
                    continue
                pos, end = item
                while pos < end and not self._stop:
                    chunk = os.pread(self._fd, min(4 * MiB, end - pos), pos)
                    if not chunk:
                        raise OSError(errno.EIO, f"the partial file ended at byte {pos}, expected {end}")
                    for fn in update:
                        fn(chunk)
                    pos += len(chunk)
                    self.hashed += len(chunk)
        except BaseException as exc:  # reported by finish()
            self._error = exc


@dataclass
class _Segment:
    pos: int
    end: int | None  # exclusive; None: until the body ends (size unknown)

    @property
    def remaining(self) -> int:
        return (self.end - self.pos) if self.end is not None else 1 << 62


@dataclass
class _PartState:
    """What ``<dest>.part.json`` records about a ``.part``: enough for any process to resume it."""

    size: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    sha256: str | None = None
    done: _Intervals = field(default_factory=_Intervals)

    @property
    def validator(self) -> str | None:
        """What to send as ``If-Range``: a strong ETag, else the Last-Modified date."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    def save(self, path: Path) -> None:
        data = {
            "version": 1,
            "size": self.size,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "sha256": self.sha256,
            "done": self.done.to_list(),
        }
        # Overwritten in place with one write: a rename per checkpoint costs a journal commit, and a
        # kill cannot tear a single write. Spaces pad a shorter record over a longer one (still JSON).
        payload = json.dumps(data).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, payload.ljust(os.fstat(fd).st_size, b" "), 0)
        finally:
            os.close(fd)

    @classmethod
    def load(cls, path: Path) -> _PartState | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                size=data["size"],
                etag=data["etag"],
                last_modified=data["last_modified"],
                sha256=data["sha256"],
                done=_Intervals(data["done"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


class _Restart(Exception):
    """The server cannot continue this ``.part`` (Range ignored, or the file changed): start over."""

    def __init__(self, reason: str, *, range_ignored: bool) -> None:
        super().__init__(reason)
        self.range_ignored = range_ignored


class _Transient(Exception):
    """A failure worth retrying: connection lost, 5xx, 429."""

    def __init__(self, reason: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.status = status


class _Expired(Exception):
    """The storage URL stopped working (401/403/410…): ask the source for a fresh one."""

    def __init__(self, status: int, reason: str, url: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.url = url


# ----------------------------------------------------------------------------------------------
# One download


class _Download:
    def __init__(
        self,
        *,
        url: str,
        dest: Path,
        expected_sha256: str | None,
        expected_size: int | None,
        expected_blake3: str | None,
        token: Secret | None,
        service: str,
        resolve_url: Callable[[], str] | None,
        expect: str,
        progress: Callable[[DownloadProgress], None] | None,
        cancel: threading.Event,
        max_connections: int,
        retries: int,
        hashing: bool,
    ) -> None:
        self.url = url
        self.dest = dest
        self.part = _part_path(dest)
        self.meta_path = _meta_path(dest)
        self.expected_sha256 = expected_sha256
        self.expected_size = expected_size
        self.expected_blake3 = expected_blake3
        self.token = token
        self.service = service
        self.resolve_url = resolve_url
        self.expect = expect
        self.callback = progress
        self.cancel = cancel
        self.max_connections = max_connections
        self.retries = retries
        self.hashing = hashing or bool(expected_sha256 or expected_blake3)
        self.shown_url = redact_url(url)
        self.auth_origin = _origin(url)
        self.limiter = limiter_for(service)
        # transfer state
        self.state = _PartState()
        self.source_url = url  # what redirects to the storage URL; replaced by resolve_url()
        self.file_url = url  # where the bytes are (after redirects)
        self.file_token = token  # token for file_url (None once a redirect left the source origin)
        self.ranges_ok = True
        self.resolves = 0
        self.sniffed = False
        self.fd = -1
        self.cursor: _HashCursor | None = None
        self.segments: list[_Segment] = []
        self.unassigned: list[_Segment] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.bytes_done = 0
        self.resumed_from = 0
        self.unsaved = 0
        self.samples: deque[tuple[float, int]] = deque()
        self.last_emit = 0.0
        self.session: aiohttp.ClientSession | None = None
        self.resolve_lock = asyncio.Lock()

    # -- orchestration ------------------------------------------------------------------------

    async def run(self) -> DownloadResult:
        started = time.monotonic()
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        before = self._dest_signature()
        from filelock import FileLock, Timeout

        lock_file = lock_path(self.dest)
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(lock_file))
        waited = False
        while True:
            self._check_cancel()
            try:
                lock.acquire(timeout=0)
                break
            except Timeout:
                if not waited:
                    self._emit("waiting", force=True, message="another download of this file is running")
                waited = True
                await asyncio.sleep(0.1)
        try:
            reused = await self._reuse(finished_by_other=waited and self._dest_signature() != before)
            if reused is not None:
                reused.elapsed_s = time.monotonic() - started
                self._emit("reused", force=True)
                return reused
            try:
                result = await self._transfer()
            except errors.Cancelled:
                self._emit("cancelled", force=True)
                raise
            except BaseException as exc:
                self._emit("failed", force=True, message=str(exc))
                raise
            result.elapsed_s = time.monotonic() - started
            self._emit("done", force=True)
            return result
        finally:
            lock.release()

    def _dest_signature(self) -> tuple[int, int, int] | None:
        try:
            stat = self.dest.stat()
        except OSError:
            return None
        return stat.st_size, stat.st_mtime_ns, stat.st_ino

    async def _reuse(self, *, finished_by_other: bool) -> DownloadResult | None:
        """The file already at ``dest``, if it is the one asked for (same hash), or the one another
        caller has just finished while we waited for the lock."""
        if not self.dest.is_file():
            return None
        known = self.expected_sha256 or self.expected_blake3
        if not known and not finished_by_other:
            return None
        size = self.dest.stat().st_size
        if self.expected_size is not None and size != self.expected_size:
            return None
        hashes = await asyncio.to_thread(file_hashes, self.dest, blake3=bool(self.expected_blake3))
        if self.expected_sha256 and hashes["sha256"] != self.expected_sha256:
            return None
        if self.expected_blake3 and hashes.get("blake3") != self.expected_blake3:
            return None
        self.bytes_done = size
        self.state.size = size
        return DownloadResult(
            path=self.dest, sha256=hashes["sha256"], size_bytes=size, url=self.shown_url, reused=True, hashes=hashes
        )

    async def _transfer(self) -> DownloadResult:
        self._load_part()
        if self.expected_size is not None:
            self._check_space(self.expected_size)
        self.fd = os.open(self.part, os.O_RDWR | os.O_CREAT, 0o644)
        finished = False
        try:
            for attempt in range(MAX_RESTARTS + 1):
                self._start_hashing()
                try:
                    await self._fetch_all()
                    break
                except _Restart as restart:
                    if attempt == MAX_RESTARTS:
                        raise errors.NetworkError(
                            f"{self.shown_url} keeps changing or refusing ranges ({restart}); gave up."
                        ) from None
                    logger.info("restarting %s from zero: %s", self.shown_url, restart)
                    self.ranges_ok = self.ranges_ok and not restart.range_ignored
                    self._reset_part()
            result = await self._verify()
            finished = True
        finally:
            if self.cursor is not None and not finished:
                self.cursor.abandon()
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
            if not finished and self.state.done.total() == 0:
                self.part.unlink(missing_ok=True)  # nothing worth keeping (refused body, no space …)
                self.meta_path.unlink(missing_ok=True)
            elif not finished and self.part.exists():
                self.state.save(self.meta_path)
        os.replace(self.part, self.dest)
        self.meta_path.unlink(missing_ok=True)
        if result.sha256:
            _remember_hashes(self.dest, result.hashes)
        return result

    def _load_part(self) -> None:
        """Pick up a ``.part`` left by an earlier attempt when it can be trusted, else start clean."""
        state = _trusted_part(self.part, self.meta_path, self.expected_sha256, self.expected_size)
        if state is None:
            self.part.unlink(missing_ok=True)
            self.state = _PartState(size=self.expected_size, sha256=self.expected_sha256)
            return
        self.state = state
        self.resumed_from = self.bytes_done = state.done.total()
        self.sniffed = any(start == 0 for start, _ in state.done)

    def _reset_part(self) -> None:
        if self.cursor is not None:
            self.cursor.abandon()
            self.cursor = None
        os.ftruncate(self.fd, 0)
        self.state = _PartState(sha256=self.expected_sha256)
        self.bytes_done = self.resumed_from = 0
        self.sniffed = False

    def _start_hashing(self) -> None:
        if not self.hashing or self.cursor is not None:
            return
        self.cursor = _HashCursor(self.fd, blake3=bool(self.expected_blake3))
        for start, end in self.state.done:  # a resume in a new process: hash what is on disk, once
            self.cursor.written(start, end - start)

    def _check_space(self, total: int) -> None:
        needed = total - self.state.done.total()
        free = shutil.disk_usage(self.dest.parent).free
        if needed > free:
            raise errors.DiskFull(
                f"Not enough free space in {self.dest.parent} for {self.dest.name}: "
                f"it needs {human_size(needed)} more, {human_size(free)} free.",
                where=self.dest.parent,
                needed=needed,
                free=free,
            )

    async def _verify(self) -> DownloadResult:
        self._emit("verifying", force=True)
        size = self.state.size if self.state.size is not None else self.bytes_done
        hashes = await asyncio.to_thread(self.cursor.finish) if self.cursor is not None else {"sha256": ""}
        self.cursor = None
        actual_size = os.fstat(self.fd).st_size
        problems = []
        if self.state.done.gaps(size) or actual_size != size:
            problems.append(("size", str(size), str(actual_size)))
        if self.expected_size is not None and actual_size != self.expected_size:
            problems.append(("size", str(self.expected_size), str(actual_size)))
        if self.expected_sha256 and hashes["sha256"] != self.expected_sha256:
            problems.append(("SHA256", self.expected_sha256, hashes["sha256"]))
        if self.expected_blake3 and hashes.get("blake3") != self.expected_blake3:
            problems.append(("BLAKE3", self.expected_blake3, hashes.get("blake3", "")))
        if problems:
            what, expected, actual = problems[0]
            self._discard_part()
            raise errors.IntegrityError(
                f"{self.dest.name} from {self.shown_url} does not match the source: {what} is {actual}, "
                f"the source published {expected}.",
                expected=expected,
                actual=actual,
            )
        return DownloadResult(
            path=self.dest,
            sha256=hashes["sha256"],
            size_bytes=actual_size,
            url=self.shown_url,
            resumed_from=self.resumed_from,
            hashes=hashes,
        )

    def _discard_part(self) -> None:
        os.close(self.fd)
        self.fd = -1
        self.part.unlink(missing_ok=True)
        self.meta_path.unlink(missing_ok=True)

    # -- HTTP --------------------------------------------------------------------------------

    async def _fetch_all(self) -> None:
        import aiohttp

        from hubloader.core.version import USER_AGENT

        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
        connector = aiohttp.TCPConnector(limit=self.max_connections + 2, enable_cleanup_closed=True)
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers=headers,
            auto_decompress=False,
            read_bufsize=READ_BUFSIZE,
        ) as session:
            self.session = session
            try:
                await self._fetch_with(session)
            finally:
                self.session = None

    async def _fetch_with(self, session: aiohttp.ClientSession) -> None:
        size = self.state.size
        gaps = self.state.done.gaps(size) if size is not None else [(self.state.done.total(), None)]
        if size is not None and not gaps:
            return  # everything is on disk already (e.g. killed while verifying)
        self._emit("starting", force=True)
        first = _Segment(*gaps[0])
        response = await self._until_cancelled(self._request_with_retries(first))
        size = self.state.size
        if size is not None:
            self._check_space(size)
            first.end = self.state.done.gaps(size)[0][1] if self.state.done.gaps(size) else first.pos
        self.state.save(self.meta_path)
        self.segments = [first]
        self.unassigned = (
            [_Segment(s, e) for s, e in self.state.done.gaps(size)[1:]] if size is not None and self.ranges_ok else []
        )
        self._spawn(first, response, extra=False)
        controller = asyncio.create_task(self._add_connections()) if self._can_grow() else None
        try:
            await self._supervise()
        finally:
            if controller is not None:
                controller.cancel()
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, *(t for t in [controller] if t), return_exceptions=True)
            self.tasks.clear()
        if self.state.size is None:  # size learnt from the end of the body
            self.state.size = self.bytes_done

    async def _until_cancelled(self, coro: Any) -> Any:
        """Await ``coro``, abandoning it within ~50 ms of a cancel request (a stalled server must not
        hold a cancel hostage)."""
        task = asyncio.ensure_future(coro)
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=0.05)
                self._check_cancel()
            return task.result()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def _can_grow(self) -> bool:
        return self.ranges_ok and self.max_connections > 1 and (self.state.size or 0) >= PARALLEL_MIN_SIZE

    async def _supervise(self) -> None:
        """Wait for the workers, cancelling promptly when asked, and report progress meanwhile."""
        while self.tasks:
            done, _ = await asyncio.wait(self.tasks, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                self.tasks.discard(task)
                task.result()
            self._check_cancel()
            self._emit("downloading")

    def _spawn(self, segment: _Segment, response: aiohttp.ClientResponse | None, *, extra: bool) -> None:
        self.tasks.add(asyncio.create_task(self._worker(segment, response, extra=extra)))

    def _hashing_behind(self) -> bool:
        """When hashing is the bottleneck, more connections would only pile bytes up for the hasher."""
        return self.cursor is not None and self.cursor.lag() > HASH_QUEUE_BYTES

    async def _add_connections(self) -> None:
        """Double the connections while the received throughput keeps rising (≥15%) and the hasher
        keeps up, up to the cap. Received, not hashed, bytes are measured: the hasher works in file
        order, so a new connection's bytes (from mid-file) would count only much later and the ramp
        would never see a gain."""
        key = (self.service, _origin(self.file_url)[1])
        previous = 0.0
        while len(self.tasks) < self.max_connections:
            start_bytes, start_time = self.bytes_done, time.monotonic()
            await asyncio.sleep(RAMP_WINDOW_S)
            rate = (self.bytes_done - start_bytes) / (time.monotonic() - start_time)
            if (previous and rate < previous * 1.15) or self._hashing_behind():
                return
            previous = rate
            for _ in range(min(len(self.tasks), self.max_connections - len(self.tasks))):
                if not _host_slots.try_take(key, self.max_connections - 1):
                    return
                segment = self._take_work()
                if segment is None:
                    _host_slots.give_back(key)
                    return
                self.tasks.add(asyncio.create_task(self._worker(segment, None, extra=True, slot=key)))

    def _take_work(self) -> _Segment | None:
        """An unstarted gap, else the second half of the largest segment still running."""
        if self.unassigned:
            segment = self.unassigned.pop(0)
        else:
            running = [s for s in self.segments if s.end is not None and s.remaining >= 2 * MIN_SPLIT]
            if not running or not self.ranges_ok:
                return None
            largest = max(running, key=lambda s: s.remaining)
            middle = largest.pos + largest.remaining // 2
            segment = _Segment(middle, largest.end)
            largest.end = middle
        self.segments.append(segment)
        return segment

    async def _worker(
        self,
        segment: _Segment | None,
        response: aiohttp.ClientResponse | None,
        *,
        extra: bool,
        slot: tuple[str, str] | None = None,
    ) -> None:
        try:
            while segment is not None:
                await self._fetch_segment(segment, response)
                response = None
                self.segments.remove(segment)
                segment = self._take_work() if extra or self.ranges_ok else None
        finally:
            if response is not None:
                response.close()
            if slot is not None:
                _host_slots.give_back(slot)

    async def _fetch_segment(self, segment: _Segment, response: aiohttp.ClientResponse | None) -> None:
        failures = 0
        while segment.end is None or segment.pos < segment.end:
            progress_mark = segment.pos
            try:
                if response is None:
                    response = await self._request_with_retries(segment)
                await self._stream(response, segment)
                if segment.end is None:
                    return  # size unknown: the end of the body is the end of the file
                if segment.pos < segment.end:
                    raise _Transient(f"the connection closed at byte {segment.pos} of {segment.end}")
            except _Transient as exc:
                failures = 0 if segment.pos > progress_mark else failures + 1
                if failures > self.retries:
                    raise errors.NetworkError(
                        f"Downloading {self.dest.name} from {self.shown_url} failed: {exc}. "
                        f"{human_size(self.bytes_done)} are kept in {self.part.name}."
                    ) from None
                await self._backoff(failures, exc)
            finally:
                if response is not None:
                    response.close()
                response = None

    async def _request_with_retries(self, segment: _Segment) -> aiohttp.ClientResponse:
        """A response positioned at ``segment.pos`` (checked), after retries and URL re-resolution."""
        failures = 0
        just_resolved = False
        while True:
            self._check_cancel()
            try:
                response = await self._open(segment)
                just_resolved = False
                return response
            except _Expired as exc:
                can_resolve = self.resolve_url is not None or exc.url != self.source_url
                if just_resolved or not can_resolve or self.resolves >= MAX_RESOLVES:
                    raise self._http_error(exc.status, exc.reason) from None
                async with self.resolve_lock:
                    if self.file_url == exc.url:  # not already replaced by another connection
                        await self._resolve()
                just_resolved = True
            except _Transient as exc:
                failures += 1
                if failures > self.retries:
                    if exc.status == 429:
                        raise errors.RateLimited(
                            f"{self.shown_url} keeps answering 429 Too Many Requests ({exc}).",
                            retry_after=exc.retry_after,
                        ) from None
                    raise errors.NetworkError(f"Could not download {self.shown_url}: {exc}.") from None
                await self._backoff(failures, exc)

    async def _resolve(self) -> None:
        """A fresh storage URL: ask ``resolve_url`` (or go back to the source URL, which redirects anew)."""
        self.resolves += 1
        if self.resolve_url is not None:
            self.source_url = await asyncio.to_thread(self.resolve_url)
        logger.info("re-resolving the storage URL of %s", self.shown_url)
        self.file_url = self.source_url
        self.file_token = self.token

    async def _open(self, segment: _Segment) -> aiohttp.ClientResponse:
        import aiohttp

        url, token = self.file_url, self.file_token
        for _ in range(MAX_REDIRECTS + 1):
            headers = {}
            if self.ranges_ok:
                end = "" if segment.end is None else str(segment.end - 1)
                headers["Range"] = f"bytes={segment.pos}-{end}"
                if self.state.validator and (segment.pos > 0 or segment.end is not None):
                    headers["If-Range"] = self.state.validator
            if token is not None and _origin(url) == self.auth_origin:
                headers["Authorization"] = f"Bearer {token.reveal()}"
            if _origin(url) == self.auth_origin:
                await self.limiter.acquire()
            _check_url(url)  # a redirect or a re-resolved URL may lead anywhere
            try:
                response = await self.session.get(url, headers=headers, allow_redirects=False)
            except _invalid_url_errors(aiohttp):
                raise errors.InvalidReference(f"Not a valid download URL: {redact_url(url)}.") from None
            except aiohttp.ClientSSLError as exc:
                raise errors.NetworkError(
                    f"TLS failed with {_origin(url)[1]}: {redact_text(str(exc), self.token)}.",
                    hint="Check the system certificates or the endpoint setting.",
                ) from None
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                raise _Transient(self._describe(exc, url)) from None
            if response.status in _REDIRECTS and "Location" in response.headers:
                response.release()
                url = urljoin(url, response.headers["Location"])
                if _origin(url) != self.auth_origin:
                    token = None  # a storage host or CDN: the token stays with its own host
                continue
            self.file_url, self.file_token = url, token
            await self._check_response(response, segment)
            return response
        raise errors.NetworkError(f"{self.shown_url} redirects more than {MAX_REDIRECTS} times.")

    async def _check_response(self, response: aiohttp.ClientResponse, segment: _Segment) -> None:
        """Accept a response for ``segment`` or raise what to do about it (retry, re-resolve, restart)."""
        status = response.status
        if status in (200, 206):
            try:
                await self._check_body_type(response)
                self._check_position(response, segment)
            except BaseException:
                response.close()
                raise
            return
        body = await self._error_body(response)
        reason = server_reason(body, response.headers.get("Content-Type", "")) or response.reason or ""
        reason = response.headers.get("X-Error-Message") or reason
        reason = redact_text(reason, self.token)
        if status == 429:
            raise _Transient(
                f"429 Too Many Requests: {reason}",
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
                status=429,
            )
        if status >= 500 or status == 408:
            raise _Transient(f"{status} {reason}", retry_after=retry_after_seconds(response.headers.get("Retry-After")))
        if status == 416:
            _, total = _content_range(response.headers.get("Content-Range"))
            raise _Restart(f"416 Range Not Satisfiable (the file has {total} bytes)", range_ignored=False)
        if status in _EXPIRED and not (status == 401 and self.file_url == self.source_url):
            raise _Expired(status, reason, self.file_url)
        raise self._http_error(status, reason)

    async def _check_body_type(self, response: aiohttp.ClientResponse) -> None:
        """Refuse an HTML/JSON answer at once, even mid-file (a login page served to a resumed range)."""
        content_type = response.headers.get("Content-Type", "")
        if self.expect == "any" or not content_type.lower().startswith(("text/html", "application/json")):
            return
        head = await response.content.read(HEAD_BYTES)
        check_head(head, content_type=content_type, expect="model", where=_origin(self.file_url)[1])
        raise errors.NotAModelFile(
            f"{_origin(self.file_url)[1]} labels {self.dest.name} as {content_type}, not a model file."
        )

    def _check_position(self, response: aiohttp.ClientResponse, segment: _Segment) -> None:
        """The body must start at ``segment.pos`` of the same file, else the ``.part`` is useless."""
        etag = response.headers.get("ETag")
        last_modified = response.headers.get("Last-Modified")
        if response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != segment.pos:
                raise _Restart(f"asked for byte {segment.pos}, got {start}", range_ignored=True)
        else:
            total = response.content_length
            if segment.pos > 0:
                changed = bool(self.state.etag and etag and etag != self.state.etag)
                raise _Restart(
                    "the file changed on the server" if changed else "the server ignores Range",
                    range_ignored=not changed,
                )
            if self.state.done.total():
                raise _Restart("the server ignores Range", range_ignored=True)  # rewrite from byte 0
            self.ranges_ok = False
        if self.state.etag and etag and etag != self.state.etag:
            raise _Restart("the file changed on the server (new ETag)", range_ignored=False)
        if self.state.size is not None and total is not None and total != self.state.size:
            if self.expected_size is not None and total != self.expected_size:
                raise errors.IntegrityError(
                    f"{self.shown_url} serves {total} bytes; the source published {self.expected_size}.",
                    expected=str(self.expected_size),
                    actual=str(total),
                )
            raise _Restart(f"the file is now {total} bytes, was {self.state.size}", range_ignored=False)
        self.state.size = total if total is not None else self.state.size
        self.state.etag = self.state.etag or etag
        self.state.last_modified = self.state.last_modified or last_modified

    async def _error_body(self, response: aiohttp.ClientResponse) -> bytes:
        import aiohttp

        try:
            return await response.content.read(HEAD_BYTES)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return b""
        finally:
            response.close()

    def _http_error(self, status: int, reason: str) -> errors.HubloaderError:
        where = f"{_origin(self.file_url)[1]} answered {status} for {self.shown_url}"
        text = f"{where}: {reason}" if reason else where
        lowered = reason.lower()
        if status in (401, 403):
            if "disabled downloads" in lowered:
                return errors.DownloadsDisabled(text + ".")
            if "early access" in lowered:
                return errors.EarlyAccess(text + ".")
            if self.token is not None:
                return errors.AuthRequired(text + ".", hint="The token was refused or has no access to this file.")
            return errors.AuthRequired(text + ".")
        if status in (404, 410):
            return errors.NotFound(text + ".")
        return errors.NetworkError(text + ".")

    def _describe(self, exc: BaseException, url: str) -> str:
        import aiohttp

        host = _origin(url)[1]
        if isinstance(exc, aiohttp.ClientConnectorError):
            return f"could not connect to {host} ({exc.os_error.strerror or exc.os_error})"
        if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
            return f"{host} sent nothing for too long"
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return f"{host} closed the connection"
        return redact_text(f"{type(exc).__name__} talking to {host}: {exc}", self.token)

    async def _backoff(self, failures: int, exc: _Transient) -> None:
        """Exponential backoff with full jitter; a server's ``Retry-After`` wins."""
        delay = (
            exc.retry_after if exc.retry_after is not None else random.uniform(0.5, 1.0) * min(30.0, 2**failures / 2)
        )
        logger.info("retrying %s in %.1fs: %s", self.shown_url, delay, exc)
        self._emit("retrying", force=True, message=str(exc))
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            self._check_cancel()
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    # -- bytes -------------------------------------------------------------------------------

    async def _stream(self, response: aiohttp.ClientResponse, segment: _Segment) -> None:
        """Copy the body into the ``.part`` at ``segment.pos`` until the segment (possibly shortened
        by a split) is complete or the body ends."""
        import aiohttp

        content = response.content
        while segment.end is None or segment.pos < segment.end:
            self._check_cancel()
            want = READ_BATCH if segment.end is None else min(READ_BATCH, segment.end - segment.pos)
            blocks, got, broken = [], 0, None
            try:
                while got < want:  # the received blocks themselves: no joining copy
                    block, _ = await content.readchunk()
                    if block:
                        blocks.append(block)
                        got += len(block)
                    elif content.at_eof():
                        break
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
                broken = _Transient(self._describe(exc, self.file_url))  # keep what did arrive
            if segment.end is not None and segment.pos + got > segment.end:
                # beyond the end (which a split may just have moved): those bytes are another segment's
                extra = segment.pos + got - segment.end
                while extra >= len(blocks[-1]):
                    extra -= len(blocks.pop())
                blocks[-1] = blocks[-1][: len(blocks[-1]) - extra] if extra else blocks[-1]
                got = segment.end - segment.pos
            if blocks:
                if segment.pos == 0 and not self.sniffed:
                    check_head(
                        b"".join(blocks)[:HEAD_BYTES],
                        content_type=response.headers.get("Content-Type", ""),
                        expect=self.expect,
                        where=_origin(self.file_url)[1],
                    )
                    self.sniffed = True
                self._write(segment.pos, blocks, got)
                segment.pos += got
            if broken is not None:
                raise broken
            if not blocks:
                return

    def _write(self, offset: int, blocks: list[bytes], length: int) -> None:
        try:
            written = os.pwritev(self.fd, blocks, offset)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise errors.DiskFull(
                    f"The disk holding {self.dest.parent} filled up while downloading {self.dest.name}; "
                    f"{human_size(self.bytes_done)} are kept in {self.part.name} for a resume.",
                    where=self.dest.parent,
                ) from None
            raise
        if written != length:  # a write to a regular file is complete unless the disk is full
            raise errors.DiskFull(f"The disk holding {self.dest.parent} is full.", where=self.dest.parent)
        self.state.done.add(offset, offset + written)
        if self.cursor is not None:
            self.cursor.written(offset, written, blocks)
        self.bytes_done += written
        self.unsaved += written
        if self.unsaved >= CHECKPOINT_BYTES:
            self.state.save(self.meta_path)
            self.unsaved = 0

    # -- events --------------------------------------------------------------------------------

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise errors.Cancelled(
                f"Download of {self.dest.name} cancelled at {human_size(self.bytes_done)}; "
                f"the partial file {self.part.name} is kept."
            )

    def _emit(self, state: str, *, force: bool = False, message: str = "") -> None:
        now = time.monotonic()
        self.samples.append((now, self.bytes_done))
        while len(self.samples) > 2 and now - self.samples[0][0] > 3.0:
            self.samples.popleft()
        if self.callback is None or (not force and now - self.last_emit < PROGRESS_INTERVAL_S):
            return
        self.last_emit = now
        first_time, first_bytes = self.samples[0]
        speed = (self.bytes_done - first_bytes) / (now - first_time) if now > first_time else 0.0
        total = self.state.size
        eta = (total - self.bytes_done) / speed if total is not None and speed > 0 else None
        event = DownloadProgress(
            path=self.dest,
            url=self.shown_url,
            state=state,
            bytes_done=self.bytes_done,
            total=total,
            speed=speed,
            eta_s=eta,
            connections=len(self.tasks),
            resumed_from=self.resumed_from,
            message=message,
        )
        try:
            self.callback(event)
        except Exception:  # a broken progress display must not break the download
            logger.exception("progress callback failed")
