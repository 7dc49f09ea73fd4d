"""Hash a file being downloaded strictly in file order, while its bytes arrive in any order."""

from __future__ import annotations

import errno
import os
import threading
from collections import deque

from hubloader.engine import MiB
from hubloader.engine.hashing import new_hashers
from hubloader.engine.intervals import Intervals

#: Bytes the hashing thread may hold in memory before falling back to reading the page cache.
HASH_QUEUE_BYTES = 32 * MiB
#: In-order bytes waiting for the hasher beyond which more connections are not worth it: the hasher, not
#: the network, is then what limits the download (twice the in-memory queue, so that a moment's jitter
#: does not stop the ramp).
HASH_LAG_LIMIT = 2 * HASH_QUEUE_BYTES


class HashCursor:
    """Hashes the ``.part`` strictly in file order on a thread of its own.

    The event loop reports each write with :meth:`written` (from that thread only). Writes at the
    hashing point are queued as the bytes themselves (no copy, no read); writes ahead of it wait in
    ``pending`` and are queued as ranges to read back with ``pread`` (from the page cache, since they
    were just written) once the hashing point reaches them. When the in-memory queue is full, bytes
    are queued as ranges too, so memory stays bounded whatever the hashing speed.
    """

    def __init__(self, fd: int, *, blake3: bool) -> None:
        self._fd = fd
        self._hashers = new_hashers(("sha256", "blake3") if blake3 else ("sha256",))
        self._queue: deque[list[bytes] | tuple[int, int] | None] = deque()
        self._ready = threading.Condition()
        self._queued_bytes = 0
        self._planned = 0  # everything before this offset is queued
        self.hashed = 0  # bytes hashed so far (written by the hashing thread only)
        self._pending = Intervals()
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
