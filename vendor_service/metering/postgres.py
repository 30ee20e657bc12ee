"""PostgreSQL implementation of ``Store``: one database shared by many replicas on many machines.

psycopg 3 with a ``psycopg_pool`` pool for reads and the rate limiter, and one dedicated
connection for the writer (group commit: every pending operation of this process in one
transaction, ``groupcommit.py``). The semantics are those of ``SQLStore`` exactly (the same
statements); what makes them hold between replicas is said there. Transactions run at READ
COMMITTED; a whole batch that loses a deadlock or a serialization check (it committed nothing)
is run again. Commits are durable (``synchronous_commit`` as the server has it, on by default);
the rate limiter's connections turn it off for their own UNLOGGED table only.

Selected by ``VENDOR_DATABASE_URL=postgresql://...`` (or ``serve --database-url``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from vendor_service.metering import migrations
from vendor_service.metering.sqlstore import Dialect, SQLStore, Tx
from vendor_service.metering.store import LedgerMissing, Op, SchemaMismatch, StoreError
from vendor_service.ratelimit import RateLimiter

POSTGRES = Dialect(
    "postgres", now_epoch="EXTRACT(EPOCH FROM clock_timestamp())::float8", paramstyle="format"
)

#: pg_advisory_xact_lock key of schema migrations ("vl2v" in ASCII).
_MIGRATION_LOCK = 0x766C3276

_RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)


def redacted(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    host = parts.get("host", "")
    port = f":{parts['port']}" if parts.get("port") else ""
    user = f"{parts['user']}@" if parts.get("user") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname', '')}"


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The database's schema version: 0 for a database without the vendor's tables."""
    exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL AS t").fetchone()
    if exists is None or not _first(exists):
        return 0
    row = conn.execute("SELECT MAX(version) AS v FROM schema_version").fetchone()
    return int(_first(row) or 0) if row else 0


def _first(row: Any) -> Any:
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


class PostgresStore(SQLStore):
    """``Store`` on PostgreSQL.

    Args:
        url: ``postgresql://user@host:port/dbname`` (libpq also reads ``PGPASSWORD``,
            ``~/.pgpass`` and the other ``PG*`` variables).
        create: create the schema in a database that has none; else :class:`LedgerMissing`.
        upgrade: apply pending migrations; else an older schema is :class:`SchemaMismatch`.
        pool_size: most pooled connections (reads, rate limits) of this process.
    """

    dialect = POSTGRES

    def __init__(
        self, url: str, *, create: bool = True, upgrade: bool = False, pool_size: int = 8
    ) -> None:
        self.url = url
        self._where = redacted(url)
        try:
            self._writer = self._connect()
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"cannot connect to {self._where}: {reason}") from None
        self._writer_lock = threading.Lock()
        try:
            self.applied_migrations = self._migrate(create=create, upgrade=upgrade)
        except BaseException:
            self._writer.close()
            raise
        self._pool: ConnectionPool[Any] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "row_factory": dict_row},
            open=True,
            name="vendor-reads",
        )
        self._limiter_pool: ConnectionPool[Any] | None = None
        super().__init__()

    def _connect(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] = psycopg.connect(
            self.url, autocommit=True, row_factory=dict_row, connect_timeout=10
        )
        return conn

    def _migrate(self, *, create: bool, upgrade: bool) -> list[int]:
        conn = self._writer
        found = schema_version(conn)
        if found == migrations.SCHEMA_VERSION:
            return []
        if found == 0 and not create:
            raise LedgerMissing(
                f"no ledger in {self._where}: create it with `vendor-service db upgrade`"
            )
        if found > migrations.SCHEMA_VERSION or (found and not upgrade):
            raise SchemaMismatch(
                migrations.mismatch_message(found, self._where),
                found=found,
                needed=migrations.SCHEMA_VERSION,
            )
        applied = []
        with conn.transaction():
            # Replicas starting at once: one applies, the others wait here and find it done.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
                " description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            current = schema_version(conn)
            for m in migrations.pending(migrations.POSTGRES, current):
                conn.execute(m.sql.encode())  # no parameters: several statements at once
                conn.execute(
                    "INSERT INTO schema_version (version, description) VALUES (%s, %s)",
                    (m.version, m.description),
                )
                applied.append(m.version)
        return applied

    # -- reads -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _read(self) -> Iterator[Tx]:
        with self._pool.connection() as conn:
            yield Tx(conn, POSTGRES)

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[Tx]:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield Tx(conn, POSTGRES)

    # -- the writer ----------------------------------------------------------------------------

    def _run_batch(self, ops: Sequence[Op[Any]]) -> list[Any]:
        # Deterministic lock order between replicas: ops on different keys commute, so they
        # are applied sorted by key id (a stable sort keeps each key's own order).
        order = sorted(range(len(ops)), key=lambda i: str(getattr(ops[i], "key_id", "")))
        results = self._commit_batch(self._one_transaction, [ops[i] for i in order])
        out: list[Any] = [None] * len(ops)
        for i, result in zip(order, results, strict=True):
            out[i] = result
        return out

    def _one_transaction(self, ops: Sequence[Op[Any]]) -> list[Any]:
        with self._writer_lock:
            if self._writer.closed or self._writer.broken:
                self._writer = self._connect()  # the server restarted: a new session
            conn = self._writer
            with conn.transaction():
                return self._apply_all(Tx(conn, POSTGRES), ops)

    def _is_retryable(self, exc: BaseException) -> bool:
        return isinstance(exc, _RETRYABLE)

    # -- the rest ----------------------------------------------------------------------------

    def rate_limiter(self) -> RateLimiter:
        if self._limiter_pool is None:
            self._limiter_pool = ConnectionPool(
                self.url,
                min_size=1,
                max_size=4,
                kwargs={"autocommit": True},
                # The buckets are an UNLOGGED table: nothing to wait for at commit.
                configure=lambda c: c.execute("SET synchronous_commit = off"),
                open=True,
                name="vendor-ratelimit",
            )
        return PostgresRateLimiter(self._limiter_pool)

    @property
    def description(self) -> str:
        return f"PostgreSQL ledger {self._where}"

    def close(self) -> None:
        super().close()
        self._pool.close()
        if self._limiter_pool is not None:
            self._limiter_pool.close()
        with self._writer_lock:
            self._writer.close()


class PostgresRateLimiter:
    """Token buckets in PostgreSQL, shared by every replica (see ``vendor_service.ratelimit``)."""

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        self._pool = pool

    def take(self, key_id: str, rps: float, burst: int) -> float:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT vendor_take_token(%s, %s, %s)", (key_id, float(rps), float(burst))
            ).fetchone()
        return float(row[0]) if row else 0.0

    def close(self) -> None:
        pass  # the pool belongs to the store
