"""The SQLite layer under the registry: connections, transactions, migrating to the schema, the model store.

SQLite used plainly: one file, WAL so readers never wait for a writer, a busy timeout so two
processes (ComfyUI's server and a CLI) queue instead of failing with "database is locked", and
every write in an explicit ``BEGIN IMMEDIATE`` transaction (taking the write lock up front is what
lets the busy timeout work; a deferred transaction that upgrades to a writer can fail at once).

The schema version lives in ``PRAGMA user_version``; :mod:`hubloader.library.schema` holds the
migrations that :func:`migrate` applies; :mod:`hubloader.library.rows` how a row and a ModelMetadata convert.

``sqlite3`` is imported here and this module is only imported when a registry is opened, so
``import hubloader`` stays light.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hubloader.core.errors import ConfigError, IndexUnavailable
from hubloader.core.metadata import ModelMetadata
from hubloader.library.rows import (
    SELECT_MODELS_DECODABLE,
    UPSERT,
    canonical_hash_kind,
    decoded_rows,
    hashes_of,
    loads,
    model_row,
    row_to_metadata,
)
from hubloader.library.schema import FTS_COLUMNS, MIGRATIONS, SCHEMA_VERSION

BUSY_TIMEOUT_S = 30.0


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat()


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) ``path`` with WAL, a busy timeout and foreign keys, in autocommit mode.

    Autocommit (``isolation_level=None``) because transactions are opened explicitly with
    :func:`transaction`; the sqlite3 module's implicit ones start too late to take the lock early.
    """
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: a crash loses at most the last commit
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA mmap_size = 268435456")  # reads straight from the page cache: listings of big indexes
    conn.execute("PRAGMA cache_size = -32000")  # 32 MB instead of 2 MB
    return conn


@contextmanager
def index_errors(path: Path) -> Iterator[None]:
    """SQLite's faults on the index file ``path`` (corrupt, locked, read-only, unopenable) as
    :class:`IndexUnavailable`; a failed transaction was rolled back, so nothing is lost."""
    try:
        yield
    except sqlite3.DatabaseError as exc:  # OperationalError ("database is locked", "readonly") included
        raise IndexUnavailable(f"The model index {path} cannot be used: {exc}.", path=path) from None


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back if the block raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def schema_version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database up to :data:`SCHEMA_VERSION` in one transaction; return the version.

    Cheap when already current (one pragma read). A database with the seed's tables but no
    version number is taken as version 0: migration 1 is idempotent, so it upgrades from there.
    """
    if schema_version(conn) == SCHEMA_VERSION:
        return SCHEMA_VERSION
    with transaction(conn):
        current = schema_version(conn)  # another process may have migrated while we waited
        if current > SCHEMA_VERSION:
            raise ConfigError(
                f"The registry database was written by a newer Hubloader (schema {current}, this one knows "
                f"{SCHEMA_VERSION}).",
                hint="Update Hubloader, or point HUBLOADER_HOME at another folder.",
            )
        for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
            for statement in _statements(script):
                try:
                    conn.execute(statement)
                except sqlite3.OperationalError as exc:
                    raise ConfigError(
                        f"Upgrading the registry database to schema {number} failed: {exc}. Nothing was changed.",
                        hint=f"Hubloader needs SQLite >= 3.31 with FTS5 and JSON1 (this Python has {sqlite3.sqlite_version}); "
                        "report this error if yours qualifies.",
                    ) from exc
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return SCHEMA_VERSION


def _statements(script: str) -> Iterator[str]:
    """Split a script into statements (trigger bodies included) without leaving the transaction.

    ``executescript`` would commit first, so a failed migration could leave a half-upgraded file.
    """
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip():
        raise ValueError(f"Incomplete SQL statement in migration: {pending.strip()[:80]}")


class ModelDatabase:
    """The registry's database file: one connection, shared by this process's threads under a lock.

    The lock serialises statements of one process; other processes are handled by SQLite's own
    locking (WAL + busy timeout).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser()
        with index_errors(self.path):
            self._conn = connect(self.path)
            self._lock = threading.RLock()
            migrate(self._conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``) holding this process's lock."""
        with index_errors(self.path), self._lock, transaction(self._conn) as conn:
            yield conn

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with index_errors(self.path), self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    def query_one(self, sql: str, params: Iterable[Any] = ()) -> tuple[Any, ...] | None:
        with index_errors(self.path), self._lock:
            row: tuple[Any, ...] | None = self._conn.execute(sql, tuple(params)).fetchone()
            return row

    # -- models --

    def upsert(self, conn: sqlite3.Connection, key: str, meta: ModelMetadata, *, managed: bool, status: str) -> None:
        """Insert or update the row ``key`` and its hashes (inside the caller's transaction)."""
        conn.execute(UPSERT, (*model_row(key, meta, status=status), int(managed)))
        hashes = hashes_of(meta)
        if not hashes:  # a scanned file not hashed yet: nothing to compare or store
            return
        pk: int = conn.execute("SELECT pk FROM models WHERE id = ?", (key,)).fetchone()[0]
        stored = conn.execute("SELECT value FROM model_hashes WHERE model_pk = ? AND kind = 'SHA256'", (pk,)).fetchone()
        if stored and hashes.get("SHA256") and stored[0] != hashes["SHA256"]:
            conn.execute("DELETE FROM model_hashes WHERE model_pk = ?", (pk,))  # a different file now
        self.store_hashes(conn, pk, hashes)

    @contextmanager
    def text_index_deferred(self, conn: sqlite3.Connection, keys: list[str]) -> Iterator[None]:
        """Inside the caller's write transaction: rows ``keys`` are written with the full-text triggers off, and
        their entries in the full-text index are brought up to date once, at the end, in two statements.

        Why: a trigger runs inside a statement savepoint, and FTS5 flushes its pending terms to a new segment at
        every savepoint, so each row written through the triggers costs ~0.5 ms of segment writes and merges
        (a scan recording 1,000 files spent half its time there; the same rows inserted at once take ~10 ms).
        DDL is transactional in SQLite: other connections never see the triggers missing, and an error rolls
        the whole transaction, triggers included, back. Rows may be inserted or updated here, not deleted.
        """
        selected = f"SELECT pk, {FTS_COLUMNS} FROM models WHERE id IN (SELECT value FROM json_each(?))"
        params = (json.dumps(keys),)
        triggers = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'models' AND name LIKE 'models_fts_%'"
        ).fetchall()
        before = conn.execute(selected, params).fetchall()
        for name, _ in triggers:
            conn.execute(f'DROP TRIGGER "{name}"')
        yield
        marks = ", ".join("?" * len(FTS_COLUMNS.split(",")))
        conn.executemany(
            f"INSERT INTO models_fts (models_fts, rowid, {FTS_COLUMNS}) VALUES ('delete', ?, {marks})", before
        )
        conn.executemany(
            f"INSERT INTO models_fts (rowid, {FTS_COLUMNS}) VALUES (?, {marks})",
            conn.execute(selected, params).fetchall(),
        )
        for _, sql in triggers:
            conn.execute(sql)

    def models(
        self,
        where: str = "",
        params: Iterable[Any] = (),
        *,
        order: str = "",
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ModelMetadata]:
        """Models matching ``where`` (over ``models m``), in ``order``.

        Two steps: the keys first, then only those rows with their hashes. Sorting keys instead of
        whole rows (descriptions, JSON) is what keeps a filtered page of a 100,000-row index fast.
        """
        sql = (
            "SELECT m.pk FROM models m" + (f" WHERE {where}" if where else "") + (f" ORDER BY {order}" if order else "")
        )
        if limit is not None or offset:
            sql += f" LIMIT {int(limit) if limit is not None else -1} OFFSET {int(offset)}"
        return self.models_by_pk([pk for (pk,) in self.query(sql, params)])

    def models_by_pk(self, pks: list[int]) -> list[ModelMetadata]:
        """The models with these row ids, in this order (their JSON columns decoded at once: see
        :data:`~hubloader.library.rows.SELECT_MODELS_DECODABLE`), with their hashes (a second query)."""
        if not pks:
            return []
        keys = json.dumps(pks)
        sql = SELECT_MODELS_DECODABLE + " WHERE m.pk IN (SELECT value FROM json_each(?))"
        by_pk = {row[0]: row for row in self.query(sql, (keys,))}
        hashes: dict[int, dict[str, str]] = {}
        for pk, kind, value in self.query(
            "SELECT model_pk, kind, value FROM model_hashes WHERE model_pk IN (SELECT value FROM json_each(?))", (keys,)
        ):
            hashes.setdefault(pk, {})[kind] = value
        found = decoded_rows([by_pk[pk] for pk in pks if pk in by_pk])
        return [row_to_metadata(row, hashes.get(row[0], {}), decoded) for row, decoded in found]

    def store_hashes(self, conn: sqlite3.Connection, pk: int, hashes: dict[str, str]) -> None:
        """Record every hash row ``pk``'s file is known by (inside the caller's transaction); empty ones are skipped."""
        conn.executemany(
            "INSERT OR REPLACE INTO model_hashes (model_pk, kind, value) VALUES (?, ?, ?)",
            [(pk, canonical_hash_kind(k), str(v).lower()) for k, v in hashes.items() if v],
        )

    # -- hash cache --

    def cached_file_facts(self, path: Path, size_bytes: int, mtime_ns: int) -> dict[str, Any] | None:
        """What was recorded about ``path`` if it still has this size and mtime, else None."""
        row = self.query_one(
            "SELECT hashes, info FROM hash_cache WHERE path = ? AND size_bytes = ? AND mtime_ns = ?",
            (str(path), size_bytes, mtime_ns),
        )
        if row is None:
            return None
        return {"hashes": loads(row[0], {}), "info": loads(row[1], {})}

    def facts_of(self, conn: sqlite3.Connection, paths: list[str]) -> dict[str, dict[str, Any]]:
        """What the hash cache holds for each of ``paths`` (any size and mtime), in one query:
        ``{path: {"signature": (size, mtime_ns), "hashes": …, "info": …}}``."""
        rows = conn.execute(
            "SELECT path, size_bytes, mtime_ns, hashes, info FROM hash_cache "
            "WHERE path IN (SELECT value FROM json_each(?))",
            (json.dumps(paths),),
        )
        return {
            path: {"signature": (size, mtime_ns), "hashes": loads(hashes, {}), "info": loads(info, {})}
            for path, size, mtime_ns, hashes, info in rows
        }

    def store_many_facts(
        self, conn: sqlite3.Connection, facts: list[tuple[str, int, int, dict[str, str], dict[str, Any]]]
    ) -> None:
        """Write ``(path, size, mtime_ns, hashes, info)`` rows of the hash cache as they are (the caller merged
        them with what was stored), inside the caller's transaction."""
        now = utcnow()
        conn.executemany(
            "INSERT OR REPLACE INTO hash_cache (path, size_bytes, mtime_ns, hashes, info, checked_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (path, size, mtime_ns, json.dumps(hashes), json.dumps(info, default=str), now)
                for path, size, mtime_ns, hashes, info in facts
            ],
        )

    def store_facts(
        self,
        conn: sqlite3.Connection,
        path: Path,
        size_bytes: int,
        mtime_ns: int,
        *,
        hashes: dict[str, str] | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        """:meth:`cache_file_facts` inside the caller's transaction."""
        row = conn.execute(
            "SELECT hashes, info FROM hash_cache WHERE path = ? AND size_bytes = ? AND mtime_ns = ?",
            (str(path), size_bytes, mtime_ns),
        ).fetchone()
        old_hashes, old_info = (loads(row[0], {}), loads(row[1], {})) if row else ({}, {})
        conn.execute(
            "INSERT OR REPLACE INTO hash_cache (path, size_bytes, mtime_ns, hashes, info, checked_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                str(path),
                size_bytes,
                mtime_ns,
                json.dumps({**old_hashes, **(hashes or {})}),
                json.dumps({**old_info, **(info or {})}, default=str),
                utcnow(),
            ),
        )

    def cache_file_facts(
        self,
        path: Path,
        size_bytes: int,
        mtime_ns: int,
        *,
        hashes: dict[str, str] | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        """Record facts about ``path`` at (size, mtime); hashes/info given as None keep what is stored."""
        with self.write() as conn:
            self.store_facts(conn, path, size_bytes, mtime_ns, hashes=hashes, info=info)


def file_signature(path: Path) -> tuple[int, int]:
    """(size, mtime_ns): the key under which facts about a file stay valid."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns
