"""Pickle files (``.ckpt/.pt/.bin/.pth``), never unpickled: the format by magic bytes, zip-bomb limits,
picklescan's verdict when the user allows pickles, and tensor names from the opcode stream
(``pickletools.genops`` decodes, it does not execute).
"""

from __future__ import annotations

import pickletools
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from hubloader.core.errors import InvalidFile, PickleNotAllowed, UnsafeFile
from hubloader.core.metadata import ModelFormat
from hubloader.engine.sniff import safetensors_header_length
from hubloader.library.recognisers import EMBEDDING_KEYS

# --- format sniffing and pickles ---------------------------------------------------------------

_PICKLE_PROTOCOLS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def sniff_format(path: str | Path) -> ModelFormat:
    """What the first bytes say the file is, whatever its name claims (see :func:`format_of`)."""
    path = Path(path)
    with open(path, "rb") as f:
        return format_of(f.read(9), path.name)


def format_of(head: bytes, name: str) -> ModelFormat:
    """The format the first 9 bytes ``head`` of the file ``name`` say it has.

    safetensors: a plausible u64 length followed by ``{``; torch zip (``PK\\x03\\x04``) or a raw
    pickle (protocol 2–5 marker ``\\x80\\x0N``, which legacy ``torch.save`` files also start with)
    → CKPT for ``.ckpt`` names, PICKLE otherwise; ``GGUF`` magic → GGUF.
    """
    if safetensors_header_length(head) is not None:
        return ModelFormat.SAFETENSORS
    if head.startswith(b"GGUF"):
        return ModelFormat.GGUF
    if head.startswith(b"PK\x03\x04") or head.startswith(_PICKLE_PROTOCOLS):
        return ModelFormat.CKPT if name.lower().endswith(".ckpt") else ModelFormat.PICKLE
    return ModelFormat.OTHER


@dataclass
class PickleScan:
    """picklescan's verdict on one file: the imports a loader would perform."""

    dangerous: list[str] = field(default_factory=list)  # "module.name" globals that can run code
    suspicious: list[str] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)  # every global referenced
    error: bool = False  # picklescan could not parse the file

    @property
    def safe(self) -> bool:
        return not self.dangerous and not self.error


#: Limits on a torch zip (``.pt``/``.ckpt``) before any of it is decompressed. torch stores its
#: entries uncompressed, one per tensor storage, beside a small ``data.pkl``: a file that claims far more
#: bytes than it holds, or a huge pickle, is a decompression bomb.
MAX_ZIP_ENTRIES = 200_000
MAX_ZIP_PICKLE_BYTES = 64 * 1024 * 1024
MAX_ZIP_RATIO = 8  # uncompressed bytes claimed per byte of archive
ZIP_RATIO_SLACK = 16 * 1024 * 1024  # small archives may compress better than that


def check_archive(path: str | Path) -> None:
    """Refuse (UnsafeFile) a zip whose entry count, pickle entries or total uncompressed size would
    exhaust memory when read; nothing is decompressed. Not a zip: nothing to check."""
    path = Path(path)
    with open(path, "rb") as f:
        if not zipfile.is_zipfile(f):
            return
        f.seek(0)
        try:
            with zipfile.ZipFile(f) as archive:
                entries = archive.infolist()
        except (zipfile.BadZipFile, ValueError, OSError) as exc:
            raise InvalidFile(f"{path.name} is a damaged zip archive ({exc}).") from None
    _check_zip_entries(path, entries)


def _check_zip_entries(path: Path, entries: list[zipfile.ZipInfo]) -> None:
    """The limits :func:`check_archive` applies to the entries of ``path``."""
    if len(entries) > MAX_ZIP_ENTRIES:
        raise UnsafeFile(f"{path.name} is a zip of {len(entries)} entries, more than {MAX_ZIP_ENTRIES}.")
    for entry in entries:
        if entry.filename.endswith(".pkl") and entry.file_size > MAX_ZIP_PICKLE_BYTES:
            raise UnsafeFile(
                f"{path.name} holds a {entry.file_size}-byte pickle ({entry.filename}), "
                f"more than {MAX_ZIP_PICKLE_BYTES} bytes."
            )
    claimed = sum(entry.file_size for entry in entries)
    if claimed > MAX_ZIP_RATIO * path.stat().st_size + ZIP_RATIO_SLACK:
        raise UnsafeFile(
            f"{path.name} would unpack to {claimed} bytes from {path.stat().st_size}: a decompression bomb."
        )


def scan_pickle(path: str | Path) -> PickleScan:
    """Scan a pickle/torch file's opcodes with picklescan (nothing is executed); a zip bomb is refused first."""
    from picklescan.scanner import SafetyLevel, scan_bytes

    path = Path(path)
    check_archive(path)
    with open(path, "rb") as f:
        result = scan_bytes(f, str(path.name), file_ext=path.suffix.lower())
    names = [(f"{g.module}.{g.name}", g.safety) for g in result.globals]
    return PickleScan(
        dangerous=[n for n, s in names if s == SafetyLevel.Dangerous],
        suspicious=[n for n, s in names if s == SafetyLevel.Suspicious],
        imports=[n for n, _ in names],
        error=bool(result.scan_err),
    )


def check_pickle(path: str | Path, *, allow_pickle: bool) -> PickleScan:
    """Refuse a pickle unless allowed; when allowed, refuse it if picklescan finds code-running imports."""
    path = Path(path)
    if not allow_pickle:
        raise PickleNotAllowed(f"{path.name} is a pickle file and pickles are not allowed.")
    scan = scan_pickle(path)
    if scan.dangerous:
        raise UnsafeFile(f"{path.name} would run code when loaded: it imports {', '.join(scan.dangerous)}.")
    if scan.error:
        raise UnsafeFile(f"{path.name} could not be scanned for dangerous pickle imports.")
    return scan


_PICKLE_NAME_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"}
_PICKLE_NAME_LIMIT = 200_000


def pickle_tensor_names(path: str | Path) -> list[str]:
    """Tensor-name-looking strings from a torch pickle's opcode stream, decoded without executing it.

    Shapes are not recovered (they live in REDUCE arguments), so recognisers see names only. A zip bomb
    is refused (UnsafeFile) before anything is decompressed.
    """
    path = Path(path)
    check_archive(path)
    names: list[str] = []
    with open(path, "rb") as f:
        if zipfile.is_zipfile(f):
            f.seek(0)
            with zipfile.ZipFile(f) as archive:
                member = next((m for m in archive.namelist() if m.endswith("data.pkl")), None)
                if member is None:
                    return []
                with archive.open(member) as pkl:
                    _collect_pickle_strings(pkl, names, pickles=1)
        else:
            f.seek(0)
            _collect_pickle_strings(f, names, pickles=4)  # legacy torch.save: magic, version, sys info, data
    return names


def _looks_like_tensor_name(text: str) -> bool:
    return ("." in text and " " not in text) or text in EMBEDDING_KEYS


def _collect_pickle_strings(stream: IO[bytes], names: list[str], *, pickles: int) -> None:
    for _ in range(pickles):
        try:
            for opcode, arg, _pos in pickletools.genops(stream):
                if opcode.name in _PICKLE_NAME_OPS and isinstance(arg, str) and _looks_like_tensor_name(arg):
                    names.append(arg)
                    if len(names) >= _PICKLE_NAME_LIMIT:
                        return
        except (ValueError, EOFError, UnicodeDecodeError, struct.error):
            return
