"""SQLite implementation of ``Store``: one WAL file shared by every worker process of one machine.

Each process has one writer thread (group commit, ``groupcommit.py``) with its own connection;
readers use one connection per thread (WAL readers never block the writer, nor it them).
Writers of different processes queue on an ``flock`` of ``ledger.sqlite3.writelock`` before
``BEGIN IMMEDIATE``: the kernel wakes the next one the moment a commit ends, where SQLite's busy
handler would sleep and poll (1, 2, 5, ... 100 ms; most of a request's time under 16 clients
before, profiled with ``benchmarks/profile_vendor.py``). ``BEGIN IMMEDIATE`` and
``busy_timeout`` stay, for any writer that does not take the lock file (an older process).

Files are private: the data dir 0700, the ledger and its ``-wal``/``-shm`` files 0600 (SQLite
gives the journal files the database file's mode), the lock file 0600.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from vendor_service.metering import migrations
from vendor_service.metering.datadir import private_dir, private_file
from vendor_service.metering.sqlstore import Dialect, SQLStore, Tx
from vendor_service.metering.store import LedgerMissing, Op, SchemaMismatch
from vendor_service.ratelimit import RateLimiter, SharedFileBuckets

SQLITE = Dialect(
    "sqlite", now_epoch="((julianday('now') - 2440587.5) * 86400.0)", paramstyle="qmark"
)


def schema_version(conn: sqlite3.Connection) -> int:
    """The ledger's schema version: 0 for an empty file, 1 for an unversioned old ledger."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "schema_version" in tables:
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)
    return 1 if "keys" in tables else 0


class SQLiteStore(SQLStore):
    """``Store`` over one SQLite file in WAL mode.

    Args:
        path: the ledger file.
        create: create the file (and its schema) when it does not exist; else
            :class:`LedgerMissing`.
        upgrade: apply pending migrations; else an older schema is :class:`SchemaMismatch`.
        busy_timeout_ms: how long a writer waits for another process's transaction.
    """

    dialect = SQLITE

    def __init__(
        self,
        path: str | Path,
        *,
        create: bool = True,
        upgrade: bool = False,
        busy_timeout_ms: int = 30_000,
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise LedgerMissing(
                    f"no ledger at {self.path}: check --data-dir, or create one with "
                    "`vendor-service db upgrade` (or --create-ledger)"
                )
            private_dir(self.path.parent)
        # 0600 before SQLite opens it: its -wal and -shm files get the same mode.
        private_file(self.path)
        self._lock_path = self.path.with_name(self.path.name + ".writelock")
        private_file(self._lock_path)
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CLOEXEC)
        self._writer = self._connect()
        try:
            self._migrate(upgrade=upgrade)
        except BaseException:
            self._close_connections()
            raise
        super().__init__()

    # -- connections -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a committed charge survives power loss, not just a process kill.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        with self._conns_lock:
            self._all.append(conn)
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _writers_lock(self) -> Iterator[None]:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _migrate(self, *, upgrade: bool) -> None:
        conn = self._writer
        self.applied_migrations = []
        with self._writers_lock():
            found = schema_version(conn)
            if found == migrations.SCHEMA_VERSION:
                return
            if found > migrations.SCHEMA_VERSION or (found and not upgrade):
                raise SchemaMismatch(
                    migrations.mismatch_message(found, str(self.path)),
                    found=found,
                    needed=migrations.SCHEMA_VERSION,
                )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
                " description TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            if found == 1 and not conn.execute("SELECT 1 FROM schema_version").fetchone():
                # the unversioned ledger of before: record it as what it is, version 1
                conn.execute(
                    "INSERT INTO schema_version VALUES (1, ?, datetime('now'))",
                    (migrations.SQLITE[0].description,),
                )
            for m in migrations.pending(migrations.SQLITE, found):
                # executescript runs outside a transaction of ours: the script is its own.
                conn.executescript(
                    "BEGIN IMMEDIATE;\n"
                    + m.sql
                    + f"\nINSERT INTO schema_version VALUES ({m.version},"
                    f" '{m.description}', datetime('now'));\nCOMMIT;"
                )
                self.applied_migrations.append(m.version)

    @contextlib.contextmanager
    def _read(self) -> Iterator[Tx]:
        yield Tx(self._conn(), SQLITE)

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[Tx]:
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield Tx(conn, SQLITE)
        finally:
            conn.execute("COMMIT")

    # -- the writer ----------------------------------------------------------------------------

    def _run_batch(self, ops: Sequence[Op[Any]]) -> list[Any]:
        return self._commit_batch(self._one_transaction, ops)

    def _one_transaction(self, ops: Sequence[Op[Any]]) -> list[Any]:
        conn = self._writer
        with self._writers_lock():
            conn.execute("BEGIN IMMEDIATE")
            try:
                results = self._apply_all(Tx(conn, SQLITE), ops)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return results

    def _is_retryable(self, exc: BaseException) -> bool:
        # another writer held the database past busy_timeout: nothing was committed, go again
        return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)

    # -- the rest ----------------------------------------------------------------------------

    def rate_limiter(self) -> RateLimiter:
        """A token bucket per key in a shared memory-mapped file next to the ledger: one limit
        for every worker process on this machine."""
        return SharedFileBuckets(self.path.with_name("ratelimit.bin"))

    @property
    def description(self) -> str:
        return f"SQLite ledger {self.path}"

    def _close_connections(self) -> None:
        with self._conns_lock:
            for conn in self._all:
                # closed from another thread already: nothing to do
                with contextlib.suppress(sqlite3.ProgrammingError):
                    conn.close()
            self._all.clear()
        self._local = threading.local()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def close(self) -> None:
        super().close()
        self._close_connections()
