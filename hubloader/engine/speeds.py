"""The speed of the last downloads, so an install plan can say how long its bytes will take.

Each finished transfer (bytes actually received, seconds) is appended to ``HUBLOADER_HOME/speeds.json``,
which keeps the last :data:`KEEP`. The estimate is total bytes over total seconds of those, so one tiny
file that finished in a millisecond does not promise a fast link. Nothing recorded: no estimate.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

from hubloader.core.metadata import DownloadResult
from hubloader.core.settings import hubloader_home

FILE_NAME = "speeds.json"
KEEP = 20
#: Transfers shorter than this say more about latency than about the link.
MIN_SECONDS = 0.05
_lock = threading.Lock()


def _path() -> Path:
    return hubloader_home() / FILE_NAME


def _read() -> list[tuple[int, float]]:
    try:
        data = json.loads(_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(data, list):
        return []
    return [(int(b), float(s)) for b, s in (e for e in data if isinstance(e, list) and len(e) == 2)]


def record_download(result: DownloadResult) -> None:
    """Remember a finished transfer's bytes and seconds (a reused file transferred nothing: not recorded)."""
    received = result.size_bytes - result.resumed_from
    if result.reused or received <= 0 or result.elapsed_s < MIN_SECONDS:
        return
    with _lock:
        entries = [*_read(), (received, result.elapsed_s)][-KEEP:]
        path = _path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{FILE_NAME}.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump([list(e) for e in entries], fh)
            os.replace(tmp, path)
        except OSError:
            return  # an estimate is a nicety: a read-only home must not fail a download


def recent_speed() -> float | None:
    """Bytes per second over the last recorded downloads, None when none is recorded."""
    entries = _read()
    seconds = sum(s for _, s in entries)
    return sum(b for b, _ in entries) / seconds if seconds > 0 else None
