"""Moving a response body into the ``.part``: batched reads, the first bytes sniffed, each write recorded
and handed to the hasher, and the minimum-speed rule that drops a trickling connection.

A batch is what a connection holds in memory before writing it: few system calls and thread hand-offs per
second on a fast link, little lost on a kill. Its size is shared out between the connections (a kill -9
loses what the batches hold, so all of them together stay under ``BATCH_BUDGET``), and a slow link
flushes every ``READ_BATCH_S`` whatever the size.
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hubloader.core import errors
from hubloader.core.settings import load_settings
from hubloader.core.units import human_size
from hubloader.engine import MiB
from hubloader.engine.connections import Segment
from hubloader.engine.failures import TooSlow, Transient
from hubloader.engine.hashcursor import HashCursor
from hubloader.engine.origin import Origin
from hubloader.engine.partfile import PartFile
from hubloader.engine.sniff import HEAD_BYTES, check_head

if TYPE_CHECKING:
    import aiohttp

#: The largest batch of one connection (a single fast stream: fewest writes and hand-offs).
READ_BATCH = 2 * MiB
#: What all connections' batches may hold together; each gets its share, at least ``MIN_BATCH``.
BATCH_BUDGET = 4 * MiB
MIN_BATCH = 256 * 1024
#: ...or the bytes gathered in this many seconds, so that a slow link keeps little in memory that a kill would lose.
READ_BATCH_S = 0.25
#: Defaults of the minimum-speed rule (settings ``min_speed_bytes_s`` and ``min_speed_window_s``).
MIN_SPEED_BYTES_S = 1024
MIN_SPEED_WINDOW_S = 30.0


@dataclass(frozen=True)
class SpeedFloor:
    """A connection that delivers fewer than ``bytes_per_s`` on average over ``window_s`` seconds is dropped
    (and retried from where it stopped): a server trickling bytes must not hold a download forever."""

    bytes_per_s: float
    window_s: float

    @classmethod
    def from_settings(cls, bytes_per_s: float | None = None, window_s: float | None = None) -> SpeedFloor:
        """The rule given, else the settings', else the defaults; 0 bytes/s turns it off."""
        settings = load_settings()
        if bytes_per_s is None:
            bytes_per_s = settings.get("min_speed_bytes_s")
        if window_s is None:
            window_s = settings.get("min_speed_window_s")
        return cls(
            float(MIN_SPEED_BYTES_S if bytes_per_s is None else bytes_per_s),
            float(MIN_SPEED_WINDOW_S if window_s is None else window_s),
        )

    def describe(self) -> str:
        return f"under {human_size(int(self.bytes_per_s))}/s for {self.window_s:g} s"


class _Window:
    """The minimum-speed check of one response: one window after another, each judged when it ends."""

    def __init__(self, floor: SpeedFloor, pos: int) -> None:
        self.floor = floor
        self.start, self.pos = time.monotonic(), pos

    def check(self, pos: int) -> None:
        now = time.monotonic()
        if self.floor.bytes_per_s <= 0 or now - self.start < self.floor.window_s:
            return
        if (pos - self.pos) / (now - self.start) < self.floor.bytes_per_s:
            raise TooSlow(f"the connection stayed {self.floor.describe()}")
        self.start, self.pos = now, pos


class Receiver:
    """The bytes of one download: every body's blocks go through :meth:`stream` into the ``.part``."""

    def __init__(
        self,
        part: PartFile,
        origin: Origin,
        *,
        expect: str,
        floor: SpeedFloor,
        connections: Callable[[], int],
        check_cancel: Callable[[], None],
    ) -> None:
        self.part = part
        self.origin = origin
        self.expect = expect
        self.floor = floor
        self.connections = connections
        self.check_cancel = check_cancel
        self.cursor: HashCursor | None = None
        self.sniffed = False
        self.bytes_done = 0

    @property
    def dest(self) -> Path:
        return self.part.dest

    def batch(self) -> int:
        return max(MIN_BATCH, min(READ_BATCH, BATCH_BUDGET // max(1, self.connections())))

    async def stream(self, response: aiohttp.ClientResponse, segment: Segment) -> None:
        """Copy the body into the ``.part`` at ``segment.pos`` until the request's range (``segment.asked``) or the
        segment (possibly shortened by a split) is complete, or the body ends."""
        import aiohttp

        content = response.content
        window = _Window(self.floor, segment.pos)
        while segment.end is None or segment.pos < segment.end:
            self.check_cancel()
            stop = segment.stop()
            if stop is not None and segment.pos >= stop:
                return  # what this request asked for is in (the body ends here)
            want = self.batch() if stop is None else min(self.batch(), stop - segment.pos)
            blocks: list[bytes] = []
            got, broken = 0, None
            flush_at = time.monotonic() + READ_BATCH_S
            try:
                while got < want and (not got or time.monotonic() < flush_at):  # the blocks themselves: no copy
                    block, _ = await content.readchunk()
                    if block:
                        blocks.append(block)
                        got += len(block)
                    elif content.at_eof():
                        break
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
                broken = Transient(self.origin.describe(exc, self.origin.file_url))  # keep what did arrive
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
                        where=self.origin.host,
                    )
                    self.sniffed = True
                self._write(segment.pos, blocks, got)
                segment.pos += got
            if broken is not None:
                raise broken
            if not blocks:
                return
            window.check(segment.pos)

    def _write(self, offset: int, blocks: list[bytes], length: int) -> None:
        """Write, then record (the record never claims bytes the ``.part`` does not hold), then hash."""
        try:
            written = self.part.write(offset, blocks)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise errors.DiskFull(
                    f"The disk holding {self.dest.parent} filled up while downloading {self.dest.name}; "
                    f"{human_size(self.bytes_done)} are kept in {self.part.path.name} for a resume.",
                    where=self.dest.parent,
                ) from None
            raise
        if written != length:  # a write to a regular file is complete unless the disk is full
            raise errors.DiskFull(f"The disk holding {self.dest.parent} is full.", where=self.dest.parent)
        self.part.record(offset, written)
        if self.cursor is not None:
            self.cursor.written(offset, written, blocks)
        self.bytes_done += written
