"""Opt-in archive of cold models: a file is compressed to ``<name>.zst`` and restored on its next use.

Off by default, because half-precision weights barely compress: their mantissa bits are close to
random. BENCHMARKS.md ("Registry") has the measured ratios; archive a model only when a few
percent of its size matters more than the seconds it costs to restore.

``zstandard`` is an optional dependency (``pip install zstandard``), imported only here, only when
an archive is made or restored. Both directions write ``<target>.part`` and ``os.replace`` it into
place, so an interrupted run never leaves a truncated file under a final name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hubloader.core.errors import ConfigError, HubloaderError

SUFFIX = ".zst"
LEVEL = 3  # zstd's default: past it, ratios on weights improve by tenths of a percent at several times the cost
CHUNK = 8 * 1024 * 1024


def _zstd() -> Any:
    try:
        import zstandard
    except ImportError:
        raise ConfigError(
            "Archiving models needs the optional 'zstandard' package.", hint="Install it: pip install zstandard"
        ) from None
    return zstandard


def archive_file(path: Path, *, level: int = LEVEL) -> Path:
    """Compress ``path`` to ``path.zst`` and delete the original; return the archive's path."""
    path = Path(path)
    if not path.is_file():
        raise HubloaderError(f"Cannot archive {path}: only single model files can be archived.")
    target = path.with_name(path.name + SUFFIX)
    zstd = _zstd()
    _write_atomically(target, lambda out: _copy(path, zstd.ZstdCompressor(level=level, threads=-1), out))
    path.unlink()
    return target


def restore_file(archive: Path, path: Path) -> Path:
    """Decompress ``archive`` back to ``path`` and delete the archive; return ``path``."""
    archive, path = Path(archive), Path(path)
    if not archive.is_file():
        raise HubloaderError(
            f"The archive {archive} is gone, so the model cannot be restored.",
            hint="Download the model again.",
        )
    zstd = _zstd()
    _write_atomically(path, lambda out: _copy(archive, zstd.ZstdDecompressor(), out))
    archive.unlink()
    return path


def _copy(source: Path, codec: Any, out: Any) -> None:
    with open(source, "rb") as src, codec.stream_writer(out, closefd=False) as writer:
        while chunk := src.read(CHUNK):
            writer.write(chunk)


def _write_atomically(target: Path, write: Any) -> None:
    part = target.with_name(target.name + ".part")
    try:
        with open(part, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
