"""SHA256s of files on disk, remembered by (path, size, mtime_ns, inode): an unchanged file is never re-hashed.

Verifying a workflow's models before every prompt (``hubloader verify``, ComfyUI's pre-run check) must cost
nothing when the files did not change, and multi-GB checkpoints take seconds each to hash. A file whose size,
modification time (nanoseconds) or inode changed — rewritten, replaced by a rename, touched — is hashed again;
a file edited in place within the same nanosecond and size is the one case the key cannot see, as for every
build tool that trusts mtimes.

The cache is its own small SQLite file beside the library index (``HUBLOADER_HOME/hashes.sqlite3``), not a
table in it: the index's schema belongs to :mod:`hubloader.library.schema`, and losing this file only costs
re-hashing. Windows has no stable inode through ``os.stat`` on every file system; there the key's inode is
whatever ``st_ino`` says (0 on some), and size plus mtime_ns still decide.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from hubloader.core.settings import hubloader_home
from hubloader.engine.hashing import sha256_file

FILE_NAME = "hashes.sqlite3"
_SCHEMA = """CREATE TABLE IF NOT EXISTS file_hashes (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS file_hashes_sha256 ON file_hashes (sha256)"""


class HashCache:
    """``sha256(path)``: the remembered SHA256 while the file's key is unchanged, else a fresh hash (stored).

    ``hashed`` counts the files actually read since this object was made (what the benchmark and the tests
    look at). Safe to share between threads; several processes may share the file (SQLite's own locking).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else hubloader_home() / FILE_NAME
        self.hashed = 0
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    def sha256(self, path: str | os.PathLike[str]) -> str:
        """The lower-case SHA256 of the file at ``path`` (FileNotFoundError when there is none)."""
        full = Path(path).resolve()
        stat = full.stat()
        key = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        with self._lock:
            row = (
                self._db()
                .execute("SELECT size, mtime_ns, inode, sha256 FROM file_hashes WHERE path = ?", (str(full),))
                .fetchone()
            )
        if row is not None and tuple(row[:3]) == key:
            return str(row[3])
        digest = sha256_file(full)
        after = full.stat()
        if (after.st_size, after.st_mtime_ns, after.st_ino) != key:
            return digest  # changed while being read: right for those bytes, not worth remembering
        with self._lock:
            self.hashed += 1
            self._db().execute(
                "INSERT OR REPLACE INTO file_hashes (path, size, mtime_ns, inode, sha256) VALUES (?, ?, ?, ?, ?)",
                (str(full), *key, digest),
            )
        return digest

    def close(self) -> None:
        """Close the database (a later call opens it again)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def paths_of(self, sha256: str) -> list[Path]:
        """The files remembered with this SHA256 that are still unchanged on disk (a same-bytes copy to reuse)."""
        with self._lock:
            rows = (
                self._db()
                .execute("SELECT path, size, mtime_ns, inode FROM file_hashes WHERE sha256 = ?", (sha256.lower(),))
                .fetchall()
            )
        found = []
        for path, size, mtime_ns, inode in rows:
            try:
                stat = os.stat(path)
            except OSError:
                continue
            if (stat.st_size, stat.st_mtime_ns, stat.st_ino) == (size, mtime_ns, inode):
                found.append(Path(path))
        return found
