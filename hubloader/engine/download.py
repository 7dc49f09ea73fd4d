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
* **Parallel ranged connections** for large files: start with one, add connections while each step
  still adds throughput, up to the per-service cap (settings ``max_connections``, default 32, and
  ``max_connections_per_host``, CivitAI 4); requests ask for spans of their segment on kept-alive
  connections, and an idle connection takes over the largest segment past its running span. Small
  files and servers without Range use a single stream.
* **Hash while downloading, no second read.** SHA256 (and BLAKE3 when the source publishes it) is
  fed strictly in file order by a hashing thread (:class:`HashCursor`). Bytes that arrive in
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

The parts live in modules of their own, arrows pointing one way: :mod:`~hubloader.engine.partfile`
(the ``.part`` and its record, over :mod:`~hubloader.engine.intervals`), :mod:`~hubloader.engine.origin`
(URLs, redirects, the token's scope, re-resolution), :mod:`~hubloader.engine.connections` (the ranges
and the ramp), :mod:`~hubloader.engine.receiver` (bodies into the ``.part``, the minimum speed),
:mod:`~hubloader.engine.hashcursor`, :mod:`~hubloader.engine.locks`,
:mod:`~hubloader.engine.progress` and :mod:`~hubloader.engine.failures`; this module orchestrates them
and keeps every public name (``from hubloader.engine.download import …``) importable.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubloader.core import errors
from hubloader.core.metadata import DownloadResult
from hubloader.core.settings import Secret
from hubloader.core.units import human_size
from hubloader.engine import MiB
from hubloader.engine.connections import Connections, Retired, Segment, connection_cap
from hubloader.engine.failures import Expired, Restart, TooSlow, Transient, backoff_delay
from hubloader.engine.hashcursor import HASH_LAG_LIMIT, HashCursor
from hubloader.engine.hashing import file_hashes, remember_hashes
from hubloader.engine.locks import acquire, lock_path, target_lock
from hubloader.engine.origin import Origin, refuse_non_http
from hubloader.engine.partfile import CHECKPOINT_BYTES, PartFile, partial_ranges, read_partial, seed_partial
from hubloader.engine.progress import DownloadProgress, ProgressReporter, TqdmProgress, tqdm_progress
from hubloader.engine.ratelimit import MAX_RETRY_WAIT
from hubloader.engine.receiver import Receiver, SpeedFloor
from hubloader.engine.responses import ResponseCheck

if TYPE_CHECKING:
    import aiohttp

#: Seconds without a byte after which a connection is given up and retried (a stalled server).
STALL_TIMEOUT_S = 60.0


__all__ = [
    "CHECKPOINT_BYTES",
    "DownloadProgress",
    "TqdmProgress",
    "adownload_file",
    "check_free_space",
    "download_file",
    "file_hashes",
    "lock_path",
    "partial_ranges",
    "read_partial",
    "seed_partial",
    "tqdm_progress",
]

logger = logging.getLogger(__name__)

READ_BUFSIZE = 1 * MiB
MAX_RESTARTS = 2


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
    check_url: Callable[[str], None] | None = None,
    check_part: Callable[[Path], None] | None = None,
    progress: Callable[[DownloadProgress], None] | None = None,
    cancel: threading.Event | None = None,
    max_connections: int | None = None,
    retries: int = 5,
    hash_while_downloading: bool = True,
    stall_timeout: float = STALL_TIMEOUT_S,
    min_speed: float | None = None,
    min_speed_window: float | None = None,
) -> DownloadResult:
    """Download ``url`` to ``dest`` (see the module docstring for the guarantees).

    ``max_connections`` overrides the per-service cap from the settings; ``retries`` is per failure
    streak (a connection that made progress starts counting again). ``hash_while_downloading=False``
    exists for benchmarks only: the result's ``sha256`` is then empty and nothing is verified.
    ``stall_timeout``: seconds without a byte (or an answer) after which a connection counts as failed and is
    retried from where it stopped, the ``.part`` kept. ``min_speed`` (bytes/s) and ``min_speed_window``
    (seconds), default from the settings ``min_speed_bytes_s``/``min_speed_window_s``: a connection slower than
    that over the window is dropped and retried from where it stopped; the download fails only when every
    retry of a range stays that slow (0 turns the rule off). ``check_url`` is called with every URL before it
    is requested (each redirect hop, each re-resolved URL) and refuses it by raising: the gate's host rule
    (:mod:`hubloader.gate`). ``check_part`` is called with the
    complete, verified ``.part`` before it gets its final name, and refuses the bytes by raising (the ``.part`` is
    then deleted): the gate's pickle rule.
    """
    refuse_non_http(url)
    if check_url is not None:
        check_url(url)
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
        check_url=check_url,
        check_part=check_part,
        progress=progress,
        cancel=cancel or threading.Event(),
        max_connections=max_connections or connection_cap(service),
        retries=retries,
        hashing=hash_while_downloading,
        stall_timeout=stall_timeout,
        floor=SpeedFloor.from_settings(min_speed, min_speed_window),
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


def check_free_space(dest: Path, needed: int) -> None:
    """Raise :class:`~hubloader.core.errors.DiskFull` when the disk that will hold ``dest`` has less than
    ``needed`` bytes free (the folder, or its nearest existing parent, is asked)."""
    where = next((folder for folder in (dest.parent, *dest.parent.parents) if folder.exists()), dest.parent)
    free = shutil.disk_usage(where).free
    if needed > free:
        raise errors.DiskFull(
            f"Not enough free space in {dest.parent} for {dest.name}: "
            f"it needs {human_size(needed)} more, {human_size(free)} free.",
            where=dest.parent,
            needed=needed,
            free=free,
        )


# ----------------------------------------------------------------------------------------------
# One download


class _Download:
    """One call of :func:`adownload_file`: takes the target's lock, reuses a file already there, else
    runs the transfer over its ``.part`` (:class:`PartFile`), its origin (:class:`Origin`) and its
    connections (:class:`Connections`), hashing in file order (:class:`HashCursor`), and verifies."""

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
        check_url: Callable[[str], None] | None,
        check_part: Callable[[Path], None] | None,
        progress: Callable[[DownloadProgress], None] | None,
        cancel: threading.Event,
        max_connections: int,
        retries: int,
        hashing: bool,
        stall_timeout: float,
        floor: SpeedFloor,
    ) -> None:
        self.dest = dest
        self.expected_sha256 = expected_sha256
        self.expected_size = expected_size
        self.expected_blake3 = expected_blake3
        self.service = service
        self.expect = expect
        self.cancel = cancel
        self.retries = retries
        self.stall_timeout = stall_timeout
        self.check_part = check_part
        self.hashing = hashing or bool(expected_sha256 or expected_blake3)
        self.origin = Origin(url, token=token, service=service, resolve_url=resolve_url, check_url=check_url)
        self.shown_url = self.origin.shown_url
        self.part = PartFile(dest)
        self.connections = Connections(max_connections, self._fetch_segment, lambda: self.ranges_ok)
        self.reporter = ProgressReporter(progress, dest, self.shown_url)
        self.responses = ResponseCheck(
            self.origin, expect=expect, expected_size=expected_size, file_name=dest.name, ranges_ignored=self._no_ranges
        )
        self.ranges_ok = True
        self.receiver = Receiver(
            self.part,
            self.origin,
            expect=expect,
            floor=floor,
            connections=lambda: len(self.connections.tasks),
            check_cancel=self._check_cancel,
        )
        self.resumed_from = 0
        self.session: aiohttp.ClientSession | None = None

    # -- orchestration ------------------------------------------------------------------------

    async def run(self) -> DownloadResult:
        started = time.monotonic()
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        before = self._dest_signature()
        lock = target_lock(self.dest)
        waited = await acquire(
            lock,
            check_cancel=self._check_cancel,
            on_wait=lambda: self._emit("waiting", force=True, message="another download of this file is running"),
        )
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
        self.receiver.bytes_done = size
        self.part.state.size = size
        return DownloadResult(
            path=self.dest, sha256=hashes["sha256"], size_bytes=size, url=self.shown_url, reused=True, hashes=hashes
        )

    async def _transfer(self) -> DownloadResult:
        self.resumed_from = self.receiver.bytes_done = self.part.load(
            sha256=self.expected_sha256, size=self.expected_size
        )
        self.receiver.sniffed = self.part.has_start()
        if self.expected_size is not None:
            self._check_space(self.expected_size)
        self.part.open()
        finished = False
        try:
            await self._attempts()
            result = await self._verify()
            if self.check_part is not None:
                try:
                    await asyncio.to_thread(self.check_part, self.part.path)
                except BaseException:
                    self.part.discard()  # refused bytes: not kept for a resume either
                    raise
            finished = True
        finally:
            if not finished:
                if self.receiver.cursor is not None:
                    self.receiver.cursor.abandon()
                self.part.keep_or_drop()
        self.part.close()
        self.part.place()
        if result.sha256:
            remember_hashes(self.dest, result.hashes)
        return result

    async def _attempts(self) -> None:
        """Fetch every missing byte, starting over (at most ``MAX_RESTARTS`` times) when the server
        cannot continue the ``.part``."""
        for attempt in range(MAX_RESTARTS + 1):
            self._start_hashing()
            try:
                await self._fetch_all()
                return
            except Restart as restart:
                if attempt == MAX_RESTARTS:
                    raise errors.NetworkError(
                        f"{self.shown_url} keeps changing or refusing ranges ({restart}); gave up."
                    ) from None
                logger.info("restarting %s from zero: %s", self.shown_url, restart)
                self.ranges_ok = self.ranges_ok and not restart.range_ignored
                self._reset_part()

    def _reset_part(self) -> None:
        if self.receiver.cursor is not None:
            self.receiver.cursor.abandon()
            self.receiver.cursor = None
        self.part.reset(sha256=self.expected_sha256)
        self.receiver.bytes_done = self.resumed_from = 0
        self.receiver.sniffed = False

    def _start_hashing(self) -> None:
        if not self.hashing or self.receiver.cursor is not None:
            return
        self.receiver.cursor = HashCursor(self.part.fd, blake3=bool(self.expected_blake3))
        for start, end in self.part.state.done:  # a resume in a new process: hash what is on disk, once
            self.receiver.cursor.written(start, end - start)

    def _check_space(self, total: int) -> None:
        check_free_space(self.dest, total - self.part.state.done.total())

    async def _verify(self) -> DownloadResult:
        self._emit("verifying", force=True)
        state = self.part.state
        size = state.size if state.size is not None else self.receiver.bytes_done
        hashes = (
            await asyncio.to_thread(self.receiver.cursor.finish) if self.receiver.cursor is not None else {"sha256": ""}
        )
        self.receiver.cursor = None
        actual_size = self.part.size_on_disk()
        problems = []
        if state.done.gaps(size) or actual_size != size:
            problems.append(("size", str(size), str(actual_size)))
        if self.expected_size is not None and actual_size != self.expected_size:
            problems.append(("size", str(self.expected_size), str(actual_size)))
        if self.expected_sha256 and hashes["sha256"] != self.expected_sha256:
            problems.append(("SHA256", self.expected_sha256, hashes["sha256"]))
        if self.expected_blake3 and hashes.get("blake3") != self.expected_blake3:
            problems.append(("BLAKE3", self.expected_blake3, hashes.get("blake3", "")))
        if problems:
            what, expected, actual = problems[0]
            self.part.discard()
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

    # -- HTTP --------------------------------------------------------------------------------

    async def _fetch_all(self) -> None:
        import aiohttp

        from hubloader.core.version import USER_AGENT

        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=self.stall_timeout)
        connector = aiohttp.TCPConnector(limit=self.connections.max_connections + 2, enable_cleanup_closed=True)
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
                await self._fetch_with()
            finally:
                self.session = None

    async def _fetch_with(self) -> None:
        state = self.part.state
        size = state.size
        gaps = state.done.gaps(size) if size is not None else [(state.done.total(), None)]
        if size is not None and not gaps:
            return  # everything is on disk already (e.g. killed while verifying)
        self._emit("starting", force=True)
        first = Segment(*gaps[0])
        response = await self._until_cancelled(self._request_with_retries(first))
        size = state.size
        if size is not None:
            self._check_space(size)
            first.end = state.done.gaps(size)[0][1] if state.done.gaps(size) else first.pos
        self.part.save()
        later = [Segment(s, e) for s, e in state.done.gaps(size)[1:]] if size is not None and self.ranges_ok else []
        self.connections.start(first, response, later)
        controller = None
        if self.connections.can_grow(state.size):
            key = (self.service, self.origin.host)
            controller = asyncio.create_task(
                self.connections.ramp(key, lambda: self.receiver.bytes_done, self._hashing_behind)
            )
        try:
            await self.connections.supervise(self._check_cancel, lambda: self._emit("downloading"))
        finally:
            await self.connections.stop(*(t for t in [controller] if t))
        if state.size is None:  # size learnt from the end of the body
            state.size = self.receiver.bytes_done

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

    def _no_ranges(self) -> None:
        """The server answered the whole file to a request from byte 0: go on in one stream."""
        self.ranges_ok = False

    def _hashing_behind(self) -> bool:
        """When hashing is the bottleneck, more connections would only pile bytes up for the hasher."""
        return self.receiver.cursor is not None and self.receiver.cursor.lag() > HASH_LAG_LIMIT

    async def _fetch_segment(self, segment: Segment, response: aiohttp.ClientResponse | None) -> None:
        """Fetch ``segment`` request by request (each ``segment.span`` bytes, on one kept-alive connection),
        retrying failures from where they stopped."""
        failures = 0
        while segment.end is None or segment.pos < segment.end:
            progress_mark, started = segment.pos, time.monotonic()
            served = False
            try:
                if response is None:
                    response = await self._request_with_retries(segment)
                await self.receiver.stream(response, segment)
                served = segment.asked is not None and segment.pos == segment.asked
                if segment.end is None:
                    return  # size unknown: the end of the body is the end of the file
                if segment.pos < segment.end and not served:
                    raise Transient(f"the connection closed at byte {segment.pos} of {segment.end}")
                failures = 0
                self.connections.next_span(segment, time.monotonic() - started, segment.pos - progress_mark)
                if served and self.connections.retire_one():
                    raise Retired
            except Transient as exc:
                # a trickle is not progress: a range that only ever trickles fails once its retries are spent
                failures = 0 if segment.pos > progress_mark and not isinstance(exc, TooSlow) else failures + 1
                if failures > self.retries:
                    raise errors.NetworkError(
                        f"Downloading {self.dest.name} from {self.shown_url} failed: {exc}. "
                        f"{human_size(self.receiver.bytes_done)} are kept in {self.part.path.name}."
                    ) from None
                await self._backoff(failures, exc)
            finally:
                if response is not None:
                    # a body read to its end leaves the connection reusable for the next request
                    response.release() if served else response.close()
                response = None

    async def _request_with_retries(self, segment: Segment) -> aiohttp.ClientResponse:
        """A response positioned at ``segment.pos`` (checked), after retries and URL re-resolution."""
        failures = 0
        just_resolved = False
        while True:
            self._check_cancel()
            try:
                response = await self._open(segment)
                just_resolved = False
                return response
            except Expired as exc:
                await self.origin.renew(exc, just_renewed=just_resolved)
                just_resolved = True
            except Transient as exc:
                failures += 1
                if failures > self.retries or (exc.retry_after or 0.0) > MAX_RETRY_WAIT:
                    if exc.status == 429:
                        raise errors.RateLimited(
                            f"{self.shown_url} keeps answering 429 Too Many Requests ({exc}).",
                            retry_after=exc.retry_after,
                        ) from None
                    raise errors.NetworkError(f"Could not download {self.shown_url}: {exc}.") from None
                await self._backoff(failures, exc)

    async def _open(self, segment: Segment) -> aiohttp.ClientResponse:
        """The file from ``segment.pos`` (a Range request while the server honours them), checked."""
        headers = {}
        segment.asked = None
        if self.ranges_ok:
            # spans only where another connection may take over; a single stream asks for all it needs
            size = self.part.state.size
            segment.asked = segment.request_end() if size is None or self.connections.can_grow(size) else segment.end
            headers["Range"] = f"bytes={segment.pos}-{'' if segment.asked is None else segment.asked - 1}"
            if self.part.state.validator and (segment.pos > 0 or segment.end is not None):
                headers["If-Range"] = self.part.state.validator
        assert self.session is not None  # _fetch_all holds the session for the whole transfer, _open runs inside it
        response = await self.origin.open(self.session, headers)
        await self.responses.accept(response, segment, self.part.state)
        if response.status == 200:
            segment.asked = None  # the whole file came, whatever was asked
        return response

    async def _backoff(self, failures: int, exc: Transient) -> None:
        """Exponential backoff with full jitter; a server's ``Retry-After`` wins."""
        delay = backoff_delay(failures, exc)
        logger.info("retrying %s in %.1fs: %s", self.shown_url, delay, exc)
        self._emit("retrying", force=True, message=str(exc))
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            self._check_cancel()
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    # -- events --------------------------------------------------------------------------------

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise errors.Cancelled(
                f"Download of {self.dest.name} cancelled at {human_size(self.receiver.bytes_done)}; "
                f"the partial file {self.part.path.name} is kept."
            )

    def _emit(self, state: str, *, force: bool = False, message: str = "") -> None:
        self.reporter.emit(
            state,
            bytes_done=self.receiver.bytes_done,
            total=self.part.state.size,
            connections=len(self.connections.tasks),
            resumed_from=self.resumed_from,
            force=force,
            message=message,
        )
