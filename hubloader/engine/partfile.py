"""The ``.part`` of a download and its ``.part.json`` record: whether an earlier attempt's bytes can be
trusted for a resume, which ranges are written, checkpoints, and the atomic final rename.

Bytes go to ``<dest>.part`` next to the target (same filesystem); only a complete, verified file is
renamed to ``dest`` with ``os.replace``. ``<dest>.part.json`` records which byte ranges of the
``.part`` are written, the file's size and its validators (ETag / Last-Modified), so any later
process can resume. Other processes read it too (:func:`partial_ranges`, :func:`read_partial`) and
seed it (:func:`seed_partial`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hubloader.engine import MiB
from hubloader.engine.intervals import Intervals
from hubloader.engine.locks import target_lock

#: Where the OS has it, a link at the last path component makes ``os.open`` fail instead of following it.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

#: Record progress in ``.part.json`` after this many new bytes, or this many seconds, whichever comes
#: first (together they bound what a kill -9 costs, on a fast link and on a slow one).
CHECKPOINT_BYTES = 2 * MiB
CHECKPOINT_S = 0.25


@dataclass
class PartState:
    """What ``<dest>.part.json`` records about a ``.part``: enough for any process to resume it."""

    size: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    sha256: str | None = None
    done: Intervals = field(default_factory=Intervals)

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
        fd = open_own(path, os.O_WRONLY | os.O_CREAT)
        try:
            os.pwrite(fd, payload.ljust(os.fstat(fd).st_size, b" "), 0)
        finally:
            os.close(fd)

    @classmethod
    def load(cls, path: Path) -> PartState | None:
        if path.is_symlink():
            return None  # planted by someone else: not our record
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                size=data["size"],
                etag=data["etag"],
                last_modified=data["last_modified"],
                sha256=data["sha256"],
                done=Intervals(data["done"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def meta_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part.json")


def open_own(path: Path, flags: int) -> int:
    """Open ``path`` (a ``.part`` or its record) never through a link: one planted there is removed first
    (its target untouched), and ``O_NOFOLLOW`` refuses one planted meanwhile; where the OS lacks it
    (Windows) the ``lstat`` check alone guards."""
    if path.is_symlink():
        path.unlink()
    return os.open(path, flags | _NOFOLLOW, 0o644)


def trusted_part(part: Path, meta: Path, sha256: str | None, size: int | None) -> PartState | None:
    """The record of a ``.part`` left by an earlier attempt, if its bytes can be kept for this download:
    it has a validator for If-Range, or the expected SHA256 will check the result anyway. A ``.part``
    that is a link is never ours."""
    if part.is_symlink() or not part.exists():
        return None
    state = PartState.load(meta)
    if state is None and sha256:
        # A .part without our record (older tool, or killed before the first record): its bytes are
        # a prefix; the final SHA256 check guards against anything wrong in it.
        state = PartState(size=size, sha256=sha256)
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


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


class PartFile:
    """The ``.part`` of one download: its record (:class:`PartState`), its open descriptor, the
    checkpoints, and what becomes of it at the end (renamed to ``dest``, kept for a resume, or dropped)."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.path = part_path(dest)
        self.meta = meta_path(dest)
        self.state = PartState()
        self.fd = -1
        self._unsaved = 0
        self._saved_at = time.monotonic()

    def load(self, *, sha256: str | None, size: int | None) -> int:
        """Pick up a ``.part`` left by an earlier attempt when it can be trusted, else start clean;
        the bytes already there."""
        state = trusted_part(self.path, self.meta, sha256, size)
        if state is None:
            self.path.unlink(missing_ok=True)
            self.state = PartState(size=size, sha256=sha256)
            return 0
        self.state = state
        return state.done.total()

    def has_start(self) -> bool:
        """Whether the file's first bytes are written (then they were sniffed already)."""
        return any(start == 0 for start, _ in self.state.done)

    def open(self) -> None:
        self.fd = open_own(self.path, os.O_RDWR | os.O_CREAT)

    def reset(self, *, sha256: str | None) -> None:
        """Empty the ``.part`` to start over from byte 0."""
        os.ftruncate(self.fd, 0)
        self.state = PartState(sha256=sha256)

    def write(self, offset: int, blocks: list[bytes]) -> int:
        """Write ``blocks`` at ``offset``; the bytes written (fewer only when the disk is full)."""
        return os.pwritev(self.fd, blocks, offset)

    def record(self, offset: int, length: int) -> None:
        """Note ``length`` bytes written at ``offset`` (in ``.part.json`` every ``CHECKPOINT_BYTES`` or
        ``CHECKPOINT_S``)."""
        self.state.done.add(offset, offset + length)
        self._unsaved += length
        if self._unsaved >= CHECKPOINT_BYTES or time.monotonic() - self._saved_at >= CHECKPOINT_S:
            self.save()

    def save(self) -> None:
        self.state.save(self.meta)
        self._unsaved = 0
        self._saved_at = time.monotonic()

    def size_on_disk(self) -> int:
        return os.fstat(self.fd).st_size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def keep_or_drop(self) -> None:
        """After a failed attempt: keep the ``.part`` and its record for a resume, unless nothing worth
        keeping was written (a refused body, no space …)."""
        self.close()
        if self.state.done.total() == 0:
            self.discard()
        elif self.path.exists():
            self.save()

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)

    def place(self) -> None:
        """The atomic final step: the complete ``.part`` becomes ``dest``."""
        os.replace(self.path, self.dest)
        self.meta.unlink(missing_ok=True)


def partial_ranges(dest: Path | str) -> tuple[int | None, list[tuple[int, int]]]:
    """An unfinished download of ``dest``: the file's size (None until known) and the byte ranges of its
    ``.part`` already written, as last recorded for a resume (see ``CHECKPOINT_BYTES``). Safe to read
    while the download runs in another thread or process."""
    state = PartState.load(meta_path(Path(dest)))
    return (None, []) if state is None else (state.size, list(state.done))


def read_partial(dest: Path | str, start: int, end: int) -> bytes | None:
    """Bytes ``[start, end)`` of ``dest``'s unfinished download, or None unless all of them are written.
    The record is checked again after reading: a download that restarted from zero meanwhile (its
    server ignored Range) truncated the ``.part`` under us."""
    dest = Path(dest)
    if not _covered(dest, start, end):
        return None
    try:
        fd = os.open(part_path(dest), os.O_RDONLY | _NOFOLLOW)
    except OSError:
        return None  # finished (renamed to dest), discarded meanwhile, or a planted link
    try:
        data = os.pread(fd, end - start, start)
    finally:
        os.close(fd)
    return data if len(data) == end - start and _covered(dest, start, end) else None


def seed_partial(dest: Path | str, *, size: int, sha256: str, pieces: Iterable[tuple[int, bytes]]) -> int:
    """Start (or extend) ``dest``'s ``.part`` with byte ranges fetched elsewhere (a site cache's staged
    chunks), so that the next ``download_file(..., expected_sha256=sha256)`` fetches only the gaps. These
    bytes pass the final SHA256 check like any others. Returns the number of bytes written."""
    dest = Path(dest)
    part, meta = part_path(dest), meta_path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with target_lock(dest):
        state = trusted_part(part, meta, sha256, size)
        if state is None:
            part.unlink(missing_ok=True)
            state = PartState(size=size, sha256=sha256)
        state.size, state.sha256 = size, sha256
        fd = open_own(part, os.O_RDWR | os.O_CREAT)
        try:
            for offset, data in pieces:
                if not state.done.covers(offset, offset + len(data)):
                    pwrite_all(fd, data, offset)
                    state.done.add(offset, offset + len(data))
                    written += len(data)
                    state.save(meta)  # a crash while seeding keeps what was copied
        finally:
            os.close(fd)
    return written


def _covered(dest: Path, start: int, end: int) -> bool:
    state = PartState.load(meta_path(dest))
    return state is not None and state.done.covers(start, end)
