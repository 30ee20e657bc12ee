"""SQLite implementation of ``Store``: one WAL file shared by every worker process.

Writers take the database lock up front (``BEGIN IMMEDIATE``) so the read-check-write of a
charge can never interleave with another process's; ``busy_timeout`` makes them queue instead of
failing. Each thread has its own connection because routes call in from a threadpool.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from shared_schemas import EmbeddingEndpoint
from vendor_service.metering.store import (
    ChargeOutcome,
    ChargeResult,
    KeyRecord,
    LedgerRow,
    UsageSummary,
    hash_key,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    budget_limit INTEGER NOT NULL CHECK (budget_limit >= 0),
    used INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0),
    created_at TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    rate_limit_rps REAL,
    rate_limit_burst INTEGER
);
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    key_id TEXT NOT NULL REFERENCES keys(id),
    created_at TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    queries INTEGER NOT NULL,
    status TEXT NOT NULL,          -- charged | refunded
    state TEXT NOT NULL,           -- in_flight | done
    owner TEXT NOT NULL,           -- server instance that took the charge
    idempotency_key TEXT
);
CREATE INDEX IF NOT EXISTS ledger_key ON ledger (key_id, seq);
CREATE INDEX IF NOT EXISTS ledger_in_flight ON ledger (state, owner);
CREATE TABLE IF NOT EXISTS idempotency (
    key_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    request_id TEXT NOT NULL,
    state TEXT NOT NULL,           -- in_flight | done
    owner TEXT NOT NULL,
    response_body BLOB,
    created_at TEXT NOT NULL,
    PRIMARY KEY (key_id, idem_key)
);
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _key(row: sqlite3.Row) -> KeyRecord:
    return KeyRecord(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        limit=row["budget_limit"],
        used=row["used"],
        created_at=datetime.fromisoformat(row["created_at"]),
        revoked=bool(row["revoked"]),
        rate_limit_rps=row["rate_limit_rps"],
        rate_limit_burst=row["rate_limit_burst"],
    )


class SQLiteStore:
    """``Store`` over one SQLite file in WAL mode."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 30_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # Writers of this process queue here, in order, instead of in SQLite's busy handler,
        # which sleeps and retries (1, 2, 5, ... 100 ms): under 16 concurrent requests the
        # charge/complete transactions spent most of their time asleep in BEGIN IMMEDIATE
        # (profiled with benchmarks/profile_vendor.py). Other processes still meet SQLite's lock.
        self._write_lock = threading.RLock()
        self._conn().executescript(_SCHEMA)

    # -- connections -------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=60
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed charge survives power loss, not just a process kill.
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                # closed from another thread already: nothing to do
                with contextlib.suppress(sqlite3.ProgrammingError):
                    conn.close()
            self._all.clear()
        self._local = threading.local()

    # -- keys --------------------------------------------------------------------------------

    def create_key(
        self,
        name: str,
        budget: int,
        rate_limit_rps: float | None = None,
        rate_limit_burst: int | None = None,
    ) -> tuple[str, KeyRecord]:
        clear = "vk_" + secrets.token_urlsafe(32)
        key_id = "key_" + uuid.uuid4().hex[:16]
        with self._tx() as db:
            db.execute(
                "INSERT INTO keys (id, name, key_hash, prefix, budget_limit, created_at,"
                " rate_limit_rps, rate_limit_burst) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key_id,
                    name,
                    hash_key(clear),
                    clear[:10],
                    budget,
                    _now(),
                    rate_limit_rps,
                    rate_limit_burst,
                ),
            )
        record = self.get_key(key_id)
        assert record is not None
        return clear, record

    def authenticate(self, clear_key: str) -> KeyRecord | None:
        row = (
            self._conn()
            .execute("SELECT * FROM keys WHERE key_hash = ?", (hash_key(clear_key),))
            .fetchone()
        )
        return _key(row) if row else None

    def get_key(self, key_id: str) -> KeyRecord | None:
        row = self._conn().execute("SELECT * FROM keys WHERE id = ?", (key_id,)).fetchone()
        return _key(row) if row else None

    def list_keys(self) -> list[KeyRecord]:
        rows = self._conn().execute("SELECT * FROM keys ORDER BY created_at, id").fetchall()
        return [_key(r) for r in rows]

    def top_up(self, key_id: str, queries: int) -> KeyRecord | None:
        with self._tx() as db:
            db.execute(
                "UPDATE keys SET budget_limit = budget_limit + ? WHERE id = ?", (queries, key_id)
            )
        return self.get_key(key_id)

    def revoke(self, key_id: str) -> KeyRecord | None:
        with self._tx() as db:
            db.execute("UPDATE keys SET revoked = 1 WHERE id = ?", (key_id,))
        return self.get_key(key_id)

    # -- charging ----------------------------------------------------------------------------

    @staticmethod
    def _idem_result(row: sqlite3.Row, body_sha256: str, key: sqlite3.Row) -> ChargeResult:
        limit, used = key["budget_limit"], key["used"]
        if row["body_sha256"] != body_sha256:
            return ChargeResult(ChargeOutcome.BODY_MISMATCH, limit, used)
        if row["state"] != "done":
            return ChargeResult(ChargeOutcome.IN_FLIGHT, limit, used)
        return ChargeResult(ChargeOutcome.REPLAY, limit, used, bytes(row["response_body"]))

    def lookup_idempotent(
        self, key_id: str, idem_key: str, body_sha256: str
    ) -> ChargeResult | None:
        db = self._conn()
        row = db.execute(
            "SELECT * FROM idempotency WHERE key_id = ? AND idem_key = ?", (key_id, idem_key)
        ).fetchone()
        if row is None:
            return None
        key = db.execute("SELECT * FROM keys WHERE id = ?", (key_id,)).fetchone()
        return self._idem_result(row, body_sha256, key)

    def charge(
        self,
        key_id: str,
        queries: int,
        *,
        request_id: str,
        endpoint: EmbeddingEndpoint,
        owner: str,
        idem_key: str | None = None,
        body_sha256: str | None = None,
    ) -> ChargeResult:
        with self._tx() as db:
            key = db.execute(
                "SELECT * FROM keys WHERE id = ? AND revoked = 0", (key_id,)
            ).fetchone()
            if key is None:
                return ChargeResult(ChargeOutcome.UNKNOWN_KEY)
            if idem_key is not None:
                row = db.execute(
                    "SELECT * FROM idempotency WHERE key_id = ? AND idem_key = ?",
                    (key_id, idem_key),
                ).fetchone()
                if row is not None:
                    return self._idem_result(row, body_sha256 or "", key)
            # The one conditional update that makes budgets exact: no row changes -> refused.
            cur = db.execute(
                "UPDATE keys SET used = used + ? WHERE id = ? AND used + ? <= budget_limit",
                (queries, key_id, queries),
            )
            if cur.rowcount != 1:
                return ChargeResult(ChargeOutcome.INSUFFICIENT, key["budget_limit"], key["used"])
            now = _now()
            db.execute(
                "INSERT INTO ledger (request_id, key_id, created_at, endpoint, queries, status,"
                " state, owner, idempotency_key) VALUES (?, ?, ?, ?, ?, 'charged', 'in_flight',"
                " ?, ?)",
                (request_id, key_id, now, endpoint, queries, owner, idem_key),
            )
            if idem_key is not None:
                db.execute(
                    "INSERT INTO idempotency (key_id, idem_key, body_sha256, request_id, state,"
                    " owner, created_at) VALUES (?, ?, ?, ?, 'in_flight', ?, ?)",
                    (key_id, idem_key, body_sha256 or "", request_id, owner, now),
                )
            return ChargeResult(ChargeOutcome.CHARGED, key["budget_limit"], key["used"] + queries)

    def complete(self, key_id: str, request_id: str, response_body: bytes) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE ledger SET state = 'done' WHERE request_id = ? AND key_id = ?",
                (request_id, key_id),
            )
            db.execute(
                "UPDATE idempotency SET state = 'done', response_body = ?"
                " WHERE key_id = ? AND request_id = ?",
                (response_body, key_id, request_id),
            )

    def _refund_in(self, db: sqlite3.Connection, key_id: str, request_id: str) -> bool:
        row = db.execute(
            "SELECT queries FROM ledger WHERE request_id = ? AND key_id = ? AND status = 'charged'",
            (request_id, key_id),
        ).fetchone()
        if row is None:  # already refunded: refunds must never double
            return False
        db.execute(
            "UPDATE ledger SET status = 'refunded', state = 'done' WHERE request_id = ?",
            (request_id,),
        )
        db.execute("UPDATE keys SET used = used - ? WHERE id = ?", (row["queries"], key_id))
        db.execute(
            "DELETE FROM idempotency WHERE key_id = ? AND request_id = ?", (key_id, request_id)
        )
        return True

    def refund(self, key_id: str, request_id: str) -> None:
        with self._tx() as db:
            self._refund_in(db, key_id, request_id)

    def recover_stale(self, current_owner: str) -> int:
        with self._tx() as db:
            rows = db.execute(
                "SELECT key_id, request_id FROM ledger"
                " WHERE state = 'in_flight' AND status = 'charged' AND owner != ?",
                (current_owner,),
            ).fetchall()
            return sum(self._refund_in(db, r["key_id"], r["request_id"]) for r in rows)

    # -- usage -------------------------------------------------------------------------------

    def usage(
        self, key_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> UsageSummary | None:
        db = self._conn()
        # One read transaction so the totals and the page describe the same instant.
        db.execute("BEGIN")
        try:
            key = db.execute("SELECT * FROM keys WHERE id = ?", (key_id,)).fetchone()
            if key is None:
                return None
            totals = db.execute(
                "SELECT endpoint, SUM(queries) AS q, COUNT(*) AS n FROM ledger"
                " WHERE key_id = ? AND status = 'charged' GROUP BY endpoint",
                (key_id,),
            ).fetchall()
            before = int(cursor) if cursor else None
            rows = db.execute(
                "SELECT * FROM ledger WHERE key_id = ? AND (? IS NULL OR seq < ?)"
                " ORDER BY seq DESC LIMIT ?",
                (key_id, before, before, limit + 1),
            ).fetchall()
        finally:
            db.execute("COMMIT")
        entries = [
            LedgerRow(
                seq=r["seq"],
                request_id=r["request_id"],
                created_at=datetime.fromisoformat(r["created_at"]),
                endpoint=r["endpoint"],
                queries=r["queries"],
                status=r["status"],
                idempotency_key=r["idempotency_key"],
            )
            for r in rows[:limit]
        ]
        return UsageSummary(
            key=_key(key),
            queries_by_endpoint={r["endpoint"]: int(r["q"]) for r in totals},
            requests=sum(int(r["n"]) for r in totals),
            entries=entries,
            next_cursor=str(entries[-1].seq) if len(rows) > limit else None,
        )
