"""File bodies the fake hub serves: bytes in memory, files on disk, or large generated streams.

Generated blobs are never held in memory: any byte range is produced on demand from a seed, so a
multi-GB "model" costs nothing until it is read. Hashes are computed once, lazily, by streaming,
and cached on the blob.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CHUNK = 64 * 1024
_PATTERN_SIZE = 1024 * 1024 + CHUNK


class Blob:
    """A byte string of known size that can be streamed by range. Subclasses implement ``read_chunks``."""

    size: int
    key: str  # stable identity (not the sha256: computing that is deferred), used for ETags and URLs

    def __init__(self) -> None:
        self._hashes: dict[str, str] | None = None
        self._lock = threading.Lock()

    def read_chunks(self, start: int, end: int, chunk: int = CHUNK) -> Iterator[bytes]:
        """Bytes ``[start, end)`` in pieces of at most ``chunk`` bytes."""
        raise NotImplementedError

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        return b"".join(self.read_chunks(start, self.size if end is None else min(end, self.size)))

    @property
    def sha256(self) -> str:
        return self.hashes()["sha256"]

    def hashes(self) -> dict[str, str]:
        """Lower-case hex digests: sha256, sha1_git (git blob id), blake3, crc32, autov1, autov2, autov3.

        Same definitions as hubloader/hashing.py (reference civitai.md §8); "" where a hash does not apply.
        """
        with self._lock:
            if self._hashes is None:
                self._hashes = self._compute_hashes()
            return self._hashes

    def _compute_hashes(self) -> dict[str, str]:
        from blake3 import blake3

        sha = hashlib.sha256()
        git = hashlib.sha1(b"blob %d\0" % self.size)
        b3 = blake3()
        crc = 0
        for piece in self.read_chunks(0, self.size, 1024 * 1024):
            sha.update(piece)
            git.update(piece)
            b3.update(piece)
            crc = zlib.crc32(piece, crc)
        digest = sha.hexdigest()
        # AutoV1 as CivitAI stores it: none for files under 2 MiB.
        autov1 = hashlib.sha256(self.read(0x100000, 0x110000)).hexdigest()[:8] if self.size >= 0x200000 else ""
        return {
            "sha256": digest,
            "sha1_git": git.hexdigest(),
            "blake3": b3.hexdigest(),
            "crc32": crc.to_bytes(4, "little").hex(),  # CivitAI's scanner prints the CRC bytes little-endian
            "autov1": autov1,
            "autov2": digest[:10],
            "autov3": self._autov3(),
        }

    def _autov3(self) -> str:
        """SHA-256 of the safetensors tensor data (after the JSON header), first 12 hex; "" if not safetensors."""
        header_len = self.safetensors_header_length()
        if header_len is None:
            return ""
        sha = hashlib.sha256()
        for piece in self.read_chunks(8 + header_len, self.size, 1024 * 1024):
            sha.update(piece)
        return sha.hexdigest()[:12]

    def safetensors_header_length(self) -> int | None:
        if self.size < 10:
            return None
        (n,) = struct.unpack("<Q", self.read(0, 8))
        if n <= 0 or 8 + n > self.size or n > 100 * 1024 * 1024 or self.read(8, 9) != b"{":
            return None
        return n

    def safetensors_header(self) -> dict | None:
        n = self.safetensors_header_length()
        if n is None:
            return None
        try:
            header = json.loads(self.read(8, 8 + n))
        except ValueError:
            return None
        return header if isinstance(header, dict) else None


class BytesBlob(Blob):
    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data = bytes(data)
        self.size = len(self.data)
        self.key = hashlib.sha1(self.data).hexdigest()

    def read_chunks(self, start: int, end: int, chunk: int = CHUNK) -> Iterator[bytes]:
        view = memoryview(self.data)
        for pos in range(start, end, chunk):
            yield bytes(view[pos : min(pos + chunk, end)])


class FileBlob(Blob):
    """A file on disk, read on demand (it must not change while served)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        stat = self.path.stat()
        self.size = stat.st_size
        self.key = hashlib.sha1(f"{self.path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()

    def read_chunks(self, start: int, end: int, chunk: int = CHUNK) -> Iterator[bytes]:
        with open(self.path, "rb") as f:
            f.seek(start)
            pos = start
            while pos < end:
                piece = f.read(min(chunk, end - pos))
                if not piece:
                    return
                pos += len(piece)
                yield piece


class GeneratedBlob(Blob):
    """``size`` deterministic pseudo-random bytes for ``seed``; any range is computed on demand.

    Block ``i`` (64 KiB) is a 16-byte (seed, i) prefix followed by a slice of a 1 MiB random pattern
    at a block-dependent offset, so no two blocks are equal (dedup and wrong-byte checks see real
    differences) while producing a block is just a memory copy.
    """

    _patterns: dict[int, bytes] = {}

    def __init__(self, size: int, seed: int | str = 0) -> None:
        super().__init__()
        if size < 0:
            raise ValueError("size must be >= 0")
        self.size = int(size)
        self.seed = int(hashlib.sha256(str(seed).encode()).hexdigest()[:15], 16)
        self.key = hashlib.sha1(f"generated:{self.seed}:{self.size}".encode()).hexdigest()

    def _pattern(self) -> bytes:
        pattern = self._patterns.get(self.seed)
        if pattern is None:
            pattern = self._patterns[self.seed] = random.Random(self.seed).randbytes(_PATTERN_SIZE)
        return pattern

    def _block(self, index: int) -> bytes:
        offset = (index * 4099) % (_PATTERN_SIZE - CHUNK)
        return struct.pack("<QQ", self.seed, index) + self._pattern()[offset : offset + CHUNK - 16]

    def read_chunks(self, start: int, end: int, chunk: int = CHUNK) -> Iterator[bytes]:
        end = min(end, self.size)
        buffer = bytearray()
        pos = start
        while pos < end:
            index, within = divmod(pos, CHUNK)
            take = min(CHUNK - within, end - pos)
            buffer += self._block(index)[within : within + take]
            pos += take
            while len(buffer) >= chunk:
                yield bytes(buffer[:chunk])
                del buffer[:chunk]
        if buffer:
            yield bytes(buffer)


@dataclass
class StoredObject:
    """A body reachable through a signed CDN URL (HF LFS blob or CivitAI storage object)."""

    blob: Blob
    filename: str | None = None
    etag: str | None = None


def make_blob(source: bytes | bytearray | Path | tuple | Blob, seed: int | str = 0) -> Blob:
    """Accept what callers pass for a file body: bytes, a Path, ``("generated", size)`` or a Blob."""
    if isinstance(source, Blob):
        return source
    if isinstance(source, (bytes, bytearray)):
        return BytesBlob(bytes(source))
    if isinstance(source, Path):
        return FileBlob(source)
    if isinstance(source, tuple) and len(source) >= 2 and source[0] == "generated":
        return GeneratedBlob(int(source[1]), source[2] if len(source) > 2 else seed)
    raise TypeError(f"unsupported file body {type(source).__name__}: pass bytes, a Path or ('generated', size)")
