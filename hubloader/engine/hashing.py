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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from hubloader.core.errors import Cancelled
from hubloader.engine.sniff import safetensors_header_length

CHUNK_SIZE = 16 << 20  # large reads: fewer syscalls and thread hand-offs
AUTOV1_OFFSET, AUTOV1_LENGTH = 0x100000, 0x10000

ProgressCallback = Callable[[int, int], None]  # (bytes hashed, total bytes)


@dataclass(frozen=True)
class FileHashes:
    """Lower-case hex digests of one file; ``civitai()`` gives them as CivitAI names and prints them."""

    size: int
    sha256: str
    blake3: str
    crc32: str
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

    def update(self, data: memoryview) -> None:
        self.value = zlib.crc32(data, self.value)

    def hexdigest(self) -> str:
        return self.value.to_bytes(4, "little").hex()


def hash_file(
    path: str | Path,
    *,
    chunk_size: int = CHUNK_SIZE,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> FileHashes:
    """SHA256, AutoV1, AutoV3, BLAKE3 and CRC32 of ``path`` in a single read pass.

    Meant for a background thread: ``progress(done, total)`` after every chunk, and setting
    ``cancel`` raises ``errors.Cancelled`` at the next chunk.
    """
    import blake3

    path = Path(path)
    data_offset = safetensors_data_offset(path) if path.suffix.lower() in (".safetensors", ".sft") else None
    sha256, addnet, b3, crc = hashlib.sha256(), hashlib.sha256(), blake3.blake3(), _Crc32()
    autov1 = bytearray()
    buffers = [bytearray(chunk_size), bytearray(chunk_size)]
    done = 0
    with open(path, "rb", buffering=0) as f, ThreadPoolExecutor(4, thread_name_prefix="hubloader-hash") as pool:
        total = os.fstat(f.fileno()).st_size
        pending: list = []
        turn = 0
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"Hashing {path.name} was cancelled.", hint="Start it again to hash the file.")
            buffer = buffers[turn]
            count = f.readinto(buffer)  # reads the next chunk while the workers hash the previous one
            for future in pending:
                future.result()
            if not count:
                break
            view = memoryview(buffer)[:count]
            start, end = done, done + count
            pending = [pool.submit(h.update, view) for h in (sha256, b3, crc)]
            if data_offset is not None and end > data_offset:
                pending.append(pool.submit(addnet.update, view[max(0, data_offset - start) :]))
            if start < AUTOV1_OFFSET + AUTOV1_LENGTH and end > AUTOV1_OFFSET:
                autov1 += view[max(0, AUTOV1_OFFSET - start) : AUTOV1_OFFSET + AUTOV1_LENGTH - start]
            done = end
            turn ^= 1
            if progress is not None:
                progress(done, total)
    return FileHashes(
        size=done,
        sha256=sha256.hexdigest(),
        blake3=b3.hexdigest(),
        crc32=crc.hexdigest(),
        autov1=hashlib.sha256(autov1).hexdigest()[:8] if done >= 2 * AUTOV1_OFFSET else None,
        autov3=addnet.hexdigest()[:12] if data_offset is not None else None,
    )


def sha256_file(path: str | Path, *, chunk_size: int = CHUNK_SIZE) -> str:
    """Plain SHA-256 of a file (lower-case hex), for a quick verification."""
    digest = hashlib.sha256()
    buffer = bytearray(chunk_size)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while count := f.readinto(buffer):
            digest.update(view[:count])
    return digest.hexdigest()


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
