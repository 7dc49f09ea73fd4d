"""Reusing bytes already on disk: a file with the right SHA256 elsewhere is linked (same file system) or copied
to where a loader looks for it, instead of being downloaded again.

The destination passes the gate's rule first (a plain name inside its folder; an identical file there is kept,
a different one is never replaced). A copy is written to a temporary name beside the destination and renamed
into place, so no half-written file ever carries the final name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hubloader.core.errors import IntegrityError
from hubloader.gate.policy import check_destination
from hubloader.gate.request import FileRequest
from hubloader.library.hashcache import HashCache


def place_reused(source: Path, dest: Path, sha256: str, *, hashes: HashCache | None = None) -> Path:
    """``dest`` holding ``source``'s bytes: a hard link when both are on one file system, else a copy.

    ``source`` must still have ``sha256`` (checked through the hash cache: an unchanged file is not re-read)."""
    hashes = hashes or HashCache()
    actual = hashes.sha256(source)
    if actual != sha256:
        raise IntegrityError(
            f"{source} changed since it was planned: its SHA256 is {actual}, not {sha256}; nothing was placed.",
            expected=sha256,
            actual=actual,
        )
    request = FileRequest(url="", folder=dest.parent, name=dest.name, sha256=sha256, size=source.stat().st_size)
    if check_destination(request) is not None:
        return dest  # the same bytes are already there
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)
        return dest
    except OSError:
        pass  # another file system, or one without hard links: copy
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest
