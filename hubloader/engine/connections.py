"""How many ranged connections a download uses, and which bytes each one fetches.

Large files start with one connection and add more while each step still adds throughput (see
:meth:`Connections.ramp`), up to the per-service cap (settings ``max_connections`` and
``max_connections_per_host``, CivitAI 4); each request asks for a span of its segment, and an idle
connection takes over the largest remaining segment past that span (so no byte is fetched twice).
Small files and servers without Range use a single stream.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hubloader.core.settings import load_settings
from hubloader.engine import MiB

if TYPE_CHECKING:
    import aiohttp

#: Below this size one stream is as fast as several and costs the server less.
PARALLEL_MIN_SIZE = 32 * MiB
#: A segment is split only if both parts would be at least this big.
MIN_SPLIT = 8 * MiB
#: The smallest request of a ranged connection; a fast connection asks for ``SPAN_S`` seconds of its speed,
#: so that a round trip per request costs little.
MIN_SPAN = 16 * MiB
SPAN_S = 1.0
#: How long the adaptive controller measures throughput before deciding to add connections.
RAMP_WINDOW_S = 0.3
#: Connections double up to this many, then grow by this many at a time.
RAMP_DOUBLE_UNTIL = 8
#: The share of the ideal gain (each added connection as fast as the others) a step must show to go on.
RAMP_GAIN = 0.3
#: The cap when the settings give none: an upper bound, the ramp stops where connections stop adding throughput.
DEFAULT_MAX_CONNECTIONS = 32


def connection_cap(service: str) -> int:
    """The most connections one download from ``service`` may use (settings, else ``DEFAULT_MAX_CONNECTIONS``)."""
    settings = load_settings()
    per_host = settings.get("max_connections_per_host") or {}
    try:
        return max(1, int(per_host.get(service) or settings.get("max_connections") or DEFAULT_MAX_CONNECTIONS))
    except (TypeError, ValueError):
        return DEFAULT_MAX_CONNECTIONS


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


@dataclass
class Segment:
    """Bytes ``[pos, end)`` one connection fetches, in requests of ``span`` bytes; ``asked`` is where its
    current request stops (None: at ``end``, or at the end of the body while the size is unknown)."""

    pos: int
    end: int | None  # exclusive; None: until the body ends (size unknown)
    asked: int | None = None
    span: int = MIN_SPAN

    @property
    def remaining(self) -> int:
        return (self.end - self.pos) if self.end is not None else 1 << 62

    def request_end(self) -> int | None:
        """Where the next request should stop: ``span`` bytes on, so that the rest of the segment can be
        handed to another connection without either fetching a byte twice. The first request of a file of
        unknown size is bounded too (its answer tells the size); later ones then run to the end of the body."""
        if self.end is None:
            return self.span if self.pos == 0 else None
        # at most half of what is left (but MIN_SPAN): another connection can always take over past it
        return min(self.end, self.pos + min(self.span, max(MIN_SPAN, self.remaining // 2)))

    def stop(self) -> int | None:
        """Where the running request's bytes stop being this segment's: its span, or the segment's end if a
        split moved that before it (None: the end of the body)."""
        if self.asked is None or self.end is None:
            return self.asked if self.end is None else self.end
        return min(self.asked, self.end)

    def cut(self) -> int | None:
        """Where another connection may take over the rest of this segment, or None. Past what the running
        request asked for (nothing fetched twice) when that leaves a useful share; at the middle when the
        request covers most of the segment (the bytes it has in flight past the cut are fetched twice)."""
        if self.end is None or self.remaining < 2 * MIN_SPLIT:
            return None
        middle = self.pos + self.remaining // 2
        asked = self.end if self.asked is None else self.asked
        if asked <= middle:
            return middle
        if self.end - asked >= MIN_SPLIT:
            return asked
        return middle if asked - self.pos >= 4 * MIN_SPLIT else None


class Retired(Exception):
    """Raised by a fetch between two requests when its connection is one too many (see :meth:`Connections.retire_one`)."""


FetchSegment = Callable[[Segment, "aiohttp.ClientResponse | None"], Awaitable[None]]


class Connections:
    """The workers of one transfer attempt: each fetches a segment with ``fetch`` (given an open
    response for the first one), then takes more work while there is some."""

    def __init__(self, max_connections: int, fetch: FetchSegment, ranges_ok: Callable[[], bool]) -> None:
        self.max_connections = max_connections
        self._fetch = fetch
        self._ranges_ok = ranges_ok
        self.segments: list[Segment] = []
        self.unassigned: list[Segment] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.retiring = 0

    def start(self, first: Segment, response: aiohttp.ClientResponse, gaps: list[Segment]) -> None:
        """The first worker on ``first`` (its response already open); ``gaps`` wait for more workers."""
        self.segments = [first]
        self.unassigned = gaps
        self.tasks.add(asyncio.create_task(self._worker(first, response, extra=False)))

    def can_grow(self, size: int | None) -> bool:
        return self._ranges_ok() and self.max_connections > 1 and (size or 0) >= PARALLEL_MIN_SIZE

    async def ramp(self, key: tuple[str, str], received: Callable[[], int], hashing_behind: Callable[[], bool]) -> None:
        """Add connections while each step still adds throughput and the hasher keeps up, up to the cap:
        doubling up to ``RAMP_DOUBLE_UNTIL`` connections, then ``RAMP_DOUBLE_UNTIL`` more at a time (a paced
        host, 50 MB/s a connection, may need 16–32; an overshoot of 16 idle connections costs CPU). A step
        is kept going only if the received throughput rose by at least ``RAMP_GAIN`` of what the added
        connections would bring on a per-connection-paced host (never less than 8%): noise does not look
        like a gain, and a host whose total is capped stops the ramp at its cap. The connections of a step
        that brought nothing are retired after their running request (:meth:`retire_one`).

        Received, not hashed, bytes are measured: the hasher works in file order, so a new connection's
        bytes (from mid-file) would count only much later and the ramp would never see a gain. ``key``
        (service, host) shares the cap with other downloads."""
        previous, added = 0.0, 0
        while len(self.tasks) < self.max_connections:
            start_bytes, start_time = received(), time.monotonic()
            await asyncio.sleep(RAMP_WINDOW_S)
            rate = (received() - start_bytes) / (time.monotonic() - start_time)
            before = len(self.tasks) - added
            needed = max(0.08, RAMP_GAIN * added / max(1, before))
            if (previous and rate < previous * (1 + needed)) or hashing_behind():
                # the last step brought nothing (or more than the hasher takes): its connections would only
                # keep socket buffers full, which is what a kill loses
                self.retiring += added
                return
            previous = rate
            added = 0
            for _ in range(min(len(self.tasks), RAMP_DOUBLE_UNTIL, self.max_connections - len(self.tasks))):
                if not _host_slots.try_take(key, self.max_connections - 1):
                    return
                segment = self._take_work()
                if segment is None:
                    _host_slots.give_back(key)
                    return
                self.tasks.add(asyncio.create_task(self._worker(segment, None, extra=True, slot=key)))
                added += 1

    async def supervise(self, check_cancel: Callable[[], None], report: Callable[[], None]) -> None:
        """Wait for the workers, cancelling promptly when asked, and report progress meanwhile."""
        while self.tasks:
            done, _ = await asyncio.wait(self.tasks, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                self.tasks.discard(task)
                task.result()
            check_cancel()
            report()

    async def stop(self, *others: asyncio.Task[None]) -> None:
        """Cancel the workers still running (and ``others``) and wait until they are gone."""
        for task in (*self.tasks, *others):
            task.cancel()
        await asyncio.gather(*self.tasks, *others, return_exceptions=True)
        self.tasks.clear()

    def _take_work(self) -> Segment | None:
        """An unstarted gap, else the second half of the largest segment still running."""
        if self.unassigned:
            segment = self.unassigned.pop(0)
        else:
            running = [s for s in self.segments if s.cut() is not None]
            if not running or not self._ranges_ok():
                return None
            largest = max(running, key=lambda s: s.remaining)
            cut = largest.cut()
            assert cut is not None  # running holds only segments with a cut
            segment = Segment(cut, largest.end)
            largest.end = cut
        self.segments.append(segment)
        return segment

    def retire_one(self) -> bool:
        """Whether the calling connection, between two requests, should stop (its segment's rest goes back to
        the pool): the ramp's last step did not add throughput. One connection always stays."""
        if self.retiring <= 0 or len(self.tasks) <= 1:
            return False
        self.retiring -= 1
        return True

    @staticmethod
    def next_span(segment: Segment, seconds: float, got: int) -> None:
        """After a request that delivered ``got`` bytes in ``seconds``: ask for ``SPAN_S`` seconds of that speed next."""
        if seconds > 0:
            segment.span = max(MIN_SPAN, int(got / seconds * SPAN_S))

    async def _worker(
        self,
        segment: Segment | None,
        response: aiohttp.ClientResponse | None,
        *,
        extra: bool,
        slot: tuple[str, str] | None = None,
    ) -> None:
        try:
            while segment is not None:
                try:
                    await self._fetch(segment, response)
                except Retired:
                    self.segments.remove(segment)
                    if segment.end is None or segment.pos < segment.end:
                        self.unassigned.insert(0, Segment(segment.pos, segment.end))
                    return
                response = None
                self.segments.remove(segment)
                segment = self._take_work() if extra or self._ranges_ok() else None
        finally:
            if response is not None:
                response.close()
            if slot is not None:
                _host_slots.give_back(slot)
