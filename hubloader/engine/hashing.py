"""Every hash CivitAI and A1111 know a model file by, from ONE read of the file.

Definitions (reference civitai.md §8, checked against CivitAI's own scanner, civitai/model-scanner
``HashTask.cs`` and its test vector for ``b"hello world"``):

* SHA256 — whole file. AutoV2 — its first 10 hex (A1111's "shorthash").
* AutoV1 — SHA-256 of the 64 KiB at offset 1 MiB, first 8 hex; None for files under 2 MiB (as CivitAI).
* AutoV3 — SHA-256 of a safetensors file's tensor bytes (after the 8-byte length and the JSON header),
  first 12 hex: kohya's "addnet" hash, what A1111 writes in "Lora hashes". None for other formats.
* BLAKE3 — whole file.
* CRC32 — the IEEE 802.3 polynomial (zlib's), printed as CivitAI's .NET scanner prints it: the four
  checksum bytes in little-endian order (``System.IO.Hashing.Crc32.GetCurrentHash``), so "hello world"
  (zlib ``0x0D4A1185``) is ``85114A0D``. Not CRC-32C.

The hashers run in worker threads (hashlib, blake3 and zlib release the GIL on large buffers) while
the next chunk is read, so all six cost about one pass of the slowest one.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hubloader.core.errors import Cancelled
from hubloader.engine.sniff import safetensors_header_length

CHUNK_SIZE = 16 << 20  # large reads: fewer syscalls and thread hand-offs
AUTOV1_OFFSET, AUTOV1_LENGTH = 0x100000, 0x10000

ProgressCallback = Callable[[int, int], None]  # (bytes hashed, total bytes)
#: What :func:`hash_file` computes unless told fewer.
ALL_DIGESTS = frozenset({"sha256", "blake3", "crc32", "autov1", "autov3"})


class Hasher(Protocol):
    """What hashlib, blake3 and the CRC32 below have in common."""

    def update(self, data: bytes | memoryview, /) -> object: ...

    def hexdigest(self) -> str: ...


@dataclass(frozen=True)
class FileHashes:
    """Lower-case hex digests of one file; ``civitai()`` gives them as CivitAI names and prints them."""

    size: int
    sha256: str
    blake3: str = ""  # "" when not asked for
    crc32: str = ""
    autov1: str | None = None
    autov3: str | None = None

    @property
    def autov2(self) -> str:
        return self.sha256[:10]

    def civitai(self) -> dict[str, str]:
        """``{"SHA256": …, "AutoV2": …}`` in CivitAI's upper-case form, unknown ones left out."""
        values = {
            "SHA256": self.sha256,
            "AutoV1": self.autov1,
            "AutoV2": self.autov2,
            "AutoV3": self.autov3,
            "BLAKE3": self.blake3,
            "CRC32": self.crc32,
        }
        return {name: value.upper() for name, value in values.items() if value}


def safetensors_data_offset(path: str | Path) -> int | None:
    """Where tensor data starts (8 + header length) if the file looks like safetensors, else None."""
    with open(path, "rb") as f:
        head = f.read(9)
        size = f.seek(0, os.SEEK_END)
    header_len = safetensors_header_length(head)
    if header_len is None:
        return None
    return 8 + header_len if 8 + header_len <= size else None


class _Crc32:
    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | memoryview) -> None:
        self.value = zlib.crc32(data, self.value)

    def hexdigest(self) -> str:
        return self.value.to_bytes(4, "little").hex()


def new_hashers(digests: Collection[str]) -> dict[str, Hasher]:
    """Fresh hash objects for the whole-file ``digests`` asked for (sha256, blake3, crc32), by name."""
    hashers: dict[str, Hasher] = {}
    if "sha256" in digests:
        hashers["sha256"] = hashlib.sha256()
    if "blake3" in digests:
        from blake3 import blake3 as new_blake3

        hashers["blake3"] = new_blake3()
    if "crc32" in digests:
        hashers["crc32"] = _Crc32()
    return hashers


def hash_chunks(
    chunks: Iterable[bytes | memoryview], *, digests: Collection[str] = ALL_DIGESTS, data_offset: int | None = None
) -> FileHashes:
    """The ``digests`` of the bytes ``chunks`` yields in order: THE hashing loop of the hub layer.

    Each chunk is hashed in worker threads while the next one is produced, so a producer may reuse a
    chunk's memory once it is asked for the chunk after the next. ``data_offset`` is where a
    safetensors file's tensor bytes start (AutoV3 needs it). Digests not asked for are left empty.
    """
    hashers = new_hashers(digests)
    addnet = hashlib.sha256() if "autov3" in digests and data_offset is not None else None
    autov1 = bytearray() if "autov1" in digests else None
    done = 0
    with ThreadPoolExecutor(4, thread_name_prefix="hubloader-hash") as pool:
        pending: list[Future[object]] = []
        for chunk in chunks:
            view = memoryview(chunk)
            for future in pending:
                future.result()
            start, end = done, done + len(view)
            pending = [pool.submit(h.update, view) for h in hashers.values()]
            if addnet is not None and data_offset is not None and end > data_offset:
                pending.append(pool.submit(addnet.update, view[max(0, data_offset - start) :]))
            if autov1 is not None and start < AUTOV1_OFFSET + AUTOV1_LENGTH and end > AUTOV1_OFFSET:
                autov1 += view[max(0, AUTOV1_OFFSET - start) : AUTOV1_OFFSET + AUTOV1_LENGTH - start]
            done = end
        for future in pending:
            future.result()
    hexes = {name: hasher.hexdigest() for name, hasher in hashers.items()}
    return FileHashes(
        size=done,
        sha256=hexes.get("sha256", ""),
        blake3=hexes.get("blake3", ""),
        crc32=hexes.get("crc32", ""),
        autov1=hashlib.sha256(autov1).hexdigest()[:8] if autov1 is not None and done >= 2 * AUTOV1_OFFSET else None,
        autov3=addnet.hexdigest()[:12] if addnet is not None else None,
    )


def hash_file(
    path: str | Path,
    *,
    digests: Collection[str] = ALL_DIGESTS,
    chunk_size: int = CHUNK_SIZE,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> FileHashes:
    """The ``digests`` of ``path`` (by default all: SHA256, AutoV1, AutoV3, BLAKE3, CRC32) in one read pass.

    Meant for a background thread: ``progress(done, total)`` after every chunk, and setting
    ``cancel`` raises ``errors.Cancelled`` at the next chunk.
    """
    path = Path(path)
    safetensors = "autov3" in digests and path.suffix.lower() in (".safetensors", ".sft")
    data_offset = safetensors_data_offset(path) if safetensors else None
    return hash_chunks(_read_chunks(path, chunk_size, progress, cancel), digests=digests, data_offset=data_offset)


def _read_chunks(
    path: Path, chunk_size: int, progress: ProgressCallback | None, cancel: threading.Event | None
) -> Iterator[memoryview]:
    """The file in chunks, read into two alternating buffers (one is read while the other is hashed)."""
    buffers = [bytearray(chunk_size), bytearray(chunk_size)]
    done, turn = 0, 0
    with open(path, "rb", buffering=0) as f:
        total = os.fstat(f.fileno()).st_size
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"Hashing {path.name} was cancelled.", hint="Start it again to hash the file.")
            count = f.readinto(buffers[turn])
            if not count:
                return
            yield memoryview(buffers[turn])[:count]
            done += count
            turn ^= 1
            if progress is not None:
                progress(done, total)


def sha256_file(path: str | Path, *, chunk_size: int = CHUNK_SIZE) -> str:
    """Plain SHA-256 of a file (lower-case hex), for a quick verification."""
    return hash_file(path, digests=("sha256",), chunk_size=chunk_size).sha256


_hash_memo: dict[tuple[str, int, int, int], dict[str, str]] = {}


def file_hashes(path: Path, *, blake3: bool = False) -> dict[str, str]:
    """SHA256 (and BLAKE3) of a file on disk, remembered for an unchanged file within this process."""
    key = _memo_key(path)
    known = _hash_memo.get(key)
    if known is not None and (not blake3 or "blake3" in known):
        return known
    hashes = hash_file(path, digests=("sha256", "blake3") if blake3 else ("sha256",), chunk_size=4 << 20)
    known = {"sha256": hashes.sha256, **({"blake3": hashes.blake3} if blake3 else {})}
    _hash_memo[key] = known
    return known


def remember_hashes(path: Path, hashes: dict[str, str]) -> None:
    """Tell :func:`file_hashes` the hashes of a file just written (computed while it was downloaded)."""
    _hash_memo[_memo_key(path)] = dict(hashes)


def _memo_key(path: Path) -> tuple[str, int, int, int]:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino


_HEX = re.compile(r"[0-9a-f]+")


def normalize_hash(value: str) -> str:
    """Lower-case hex without a ``0x`` prefix (OneTrainer writes ``modelspec.hash_sha256`` as 0x…)."""
    text = (value or "").strip().lower()
    return text[2:] if text.startswith("0x") else text


def verify_checksum(path: str | Path, expected: str) -> bool:
    """True when ``path`` matches ``expected``: a full SHA256 (64 hex) or an AutoV2 (its first 10 hex),
    any case. Anything else (a typo, another hash kind) is simply False."""
    expected = normalize_hash(expected)
    if len(expected) not in (10, 64) or not _HEX.fullmatch(expected):
        return False
    return sha256_file(path).startswith(expected)


def file_signature(path: str | Path) -> tuple[int, int]:
    """(size, mtime_ns): the key under which a file's hashes stay valid."""
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns
