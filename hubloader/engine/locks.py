"""One download per target file, across threads and processes: a file lock under ``HUBLOADER_HOME/locks``."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hubloader.core.settings import hubloader_home

if TYPE_CHECKING:
    from filelock import FileLock


def lock_path(dest: Path | str) -> Path:
    """The file lock that allows one download of ``dest`` at a time: ``HUBLOADER_HOME/locks/<sha256>.lock``.

    It lives in one place outside the model folders (a lock beside every model clutters the host's
    lists and outlives the download). The name hashes the absolute target with its folder's links
    resolved, so every spelling of one destination shares a lock, and a target that is itself a link
    (a HuggingFace cache file linked into a host folder) keeps the same lock before and after.
    The ComfyUI node, the A1111 tab and the command line share ``HUBLOADER_HOME`` by default; two
    processes given different ``HUBLOADER_HOME`` do not share locks and may download one target at once.
    """
    target = Path(dest).expanduser().absolute()
    key = os.path.join(os.path.realpath(target.parent), target.name)
    return hubloader_home() / "locks" / f"{hashlib.sha256(key.encode('utf-8', 'surrogateescape')).hexdigest()}.lock"


def target_lock(dest: Path) -> FileLock:
    """The (not yet acquired) lock of ``dest``, its folder created."""
    from filelock import FileLock

    lock_file = lock_path(dest)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(lock_file))


async def acquire(lock: FileLock, *, check_cancel: Callable[[], None], on_wait: Callable[[], None]) -> bool:
    """Take ``lock`` without blocking the event loop, polling every 0.1 s; ``on_wait`` once if another
    holder makes us wait, ``check_cancel`` before every try. True when we had to wait."""
    from filelock import Timeout

    waited = False
    while True:
        check_cancel()
        try:
            lock.acquire(timeout=0)
            return waited
        except Timeout:
            if not waited:
                on_wait()
            waited = True
            await asyncio.sleep(0.1)
