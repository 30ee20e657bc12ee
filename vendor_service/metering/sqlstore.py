"""The store's logic once, in SQL both SQLite and PostgreSQL run: what each operation does.

``SQLStore`` turns operations into statements inside the writer's group transaction; the
subclasses (``sqlite.py``, ``postgres.py``) only say how to connect, begin, commit and read.
Statements use ``?`` placeholders; the PostgreSQL dialect rewrites them to ``%s``.

Why each charge is safe under PostgreSQL's READ COMMITTED too, where two replicas run at once:
the conditional ``UPDATE keys ... WHERE used + n <= budget_limit`` locks the key's row and
re-evaluates its condition on the newest committed version, so two charges can never both fit
into the same remaining budget; the idempotency row is inserted with ``ON CONFLICT DO NOTHING``,
which waits for a concurrent insert of the same key to commit or roll back, and a charge that
finds the key taken is rolled back to its savepoint and answered from the winner's row.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol, TypeVar

from shared_schemas import EmbeddingEndpoint
from vendor_service.metering.groupcommit import Failed, GroupCommitter, await_op
from vendor_service.metering.owners import host_id, owner_alive, process_start
from vendor_service.metering.store import (
    ChargeOp,
    ChargeOutcome,
    ChargeResult,
    CompleteOp,
    CreateKeyOp,
    HeartbeatOp,
    KeyRecord,
    LedgerRow,
    Op,
    OwnerRecord,
    RecoverOp,
    RefundOp,
    RegisterOwnerOp,
    ReleaseOwnerOp,
    RevokeOp,
    TopUpOp,
    UsageSummary,
    hash_key,
)
from vendor_service.ratelimit import RateLimiter

R = TypeVar("R")
log = logging.getLogger(__name__)


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    def execute(self, sql: Any, params: Any = ...) -> Any: ...


@dataclass(frozen=True)
class Dialect:
    """What differs between the two databases' SQL."""

    name: str
    #: SQL for the database clock as unix seconds (owners' heartbeats and leases)
    now_epoch: str
    paramstyle: str  # "qmark" (sqlite3) or "format" (psycopg)

    def sql(self, statement: str) -> str:
        return statement if self.paramstyle == "qmark" else statement.replace("?", "%s")

    def ts(self, value: datetime) -> Any:
        """A timestamp as a parameter."""
        return value.isoformat() if self.paramstyle == "qmark" else value

    @staticmethod
    def dt(value: Any) -> datetime:
        """A stored timestamp as an aware datetime."""
        if isinstance(value, datetime):
            return value
        return datetime.fromisoformat(str(value))


class Tx:
    """Statements on one connection in one dialect."""

    def __init__(self, conn: Connection, dialect: Dialect) -> None:
        self.conn = conn
        self.d = dialect

    def run(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        cur: Cursor = self.conn.execute(self.d.sql(sql), tuple(params))
        return cur

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.run(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self.run(sql, params).fetchall()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def key_record(row: Any, d: Dialect) -> KeyRecord:
    return KeyRecord(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        limit=int(row["budget_limit"]),
        used=int(row["used"]),
        created_at=d.dt(row["created_at"]),
        revoked=bool(row["revoked"]),
        rate_limit_rps=row["rate_limit_rps"],
        rate_limit_burst=row["rate_limit_burst"],
    )


def _idem_result(row: Any, body_sha256: str, key: Any) -> ChargeResult:
    limit, used = int(key["budget_limit"]), int(key["used"])
    if row["body_sha256"] != body_sha256:
        return ChargeResult(ChargeOutcome.BODY_MISMATCH, limit, used)
    if row["state"] != "done":
        return ChargeResult(ChargeOutcome.IN_FLIGHT, limit, used)
    return ChargeResult(ChargeOutcome.REPLAY, limit, used, bytes(row["response_body"]))


class _NeedSavepoints(Exception):
    """The fast path of a batch met an op that must be undone alone: go again, carefully."""


class _Again:
    """Apply the op once more after rolling back its savepoint (a concurrent writer won)."""


AGAIN = _Again()


def this_owner(owner_id: str, server: str = "") -> RegisterOwnerOp:
    """The registration of the calling process as ``owner_id``."""
    pid = os.getpid()
    return RegisterOwnerOp(owner_id, server, pid, host_id(), process_start(pid))


class SQLStore:
    """``Store`` on a SQL database; see the module docstring. Subclasses provide connections."""

    dialect: Dialect

    def __init__(self) -> None:
        self._committer = GroupCommitter(self._run_batch, name=f"{self.dialect.name}-writer")

    # -- hooks of the subclasses --------------------------------------------------------------

    def _run_batch(self, ops: Sequence[Op[Any]]) -> list[Any]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Tx]:
        """A connection for one or a few autocommitted reads."""
        raise NotImplementedError

    def _snapshot(self) -> AbstractContextManager[Tx]:
        """A read-only transaction: several reads that describe one instant."""
        raise NotImplementedError

    def rate_limiter(self) -> RateLimiter:
        raise NotImplementedError

    @property
    def description(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        self._committer.close()

    # -- operations ---------------------------------------------------------------------------

    def submit(self, op: Op[R]) -> Future[R]:
        return self._committer.submit(op)

    def apply(self, op: Op[R]) -> Awaitable[R]:
        return await_op(self.submit, op)

    def execute(self, op: Op[R]) -> R:
        return self.submit(op).result()

    @property
    def batch_sizes(self) -> list[int]:
        """Sizes of the batches this process committed (measurements)."""
        return self._committer.batch_sizes

    def _commit_batch(
        self, run: Callable[[Sequence[Op[Any]]], list[Any]], ops: Sequence[Op[Any]]
    ) -> list[Any]:
        """``run(ops)`` (one transaction), fast first: no savepoints, since a refused op
        changed nothing. Only when an op must be undone alone (it raised, or a concurrent
        writer took its idempotency key after it charged) is the transaction rolled back and
        run again with a savepoint per op."""
        self._careful = False
        try:
            return retry_batch(run, ops, self._is_retryable)
        except _NeedSavepoints:
            self._careful = True
            return retry_batch(run, ops, self._is_retryable)

    def _apply_all(self, tx: Tx, ops: Sequence[Op[Any]]) -> list[Any]:
        """Every op in order, inside the caller's transaction (see :meth:`_commit_batch`)."""
        if not getattr(self, "_careful", True):
            results = []
            for op in ops:
                try:
                    result, _keep = self._apply(tx, op)
                except Exception as exc:
                    if self._is_retryable(exc):
                        raise
                    raise _NeedSavepoints from exc
                if result is AGAIN:  # it charged, then lost the key: undo it alone
                    raise _NeedSavepoints
                results.append(result)  # refused ops (keep False) made no change
            return results
        results = []
        for op in ops:
            for _ in range(5):
                tx.run("SAVEPOINT op")
                try:
                    result, keep = self._apply(tx, op)
                except Exception as exc:
                    if self._is_retryable(exc):  # the whole transaction has to go again
                        raise
                    tx.run("ROLLBACK TO SAVEPOINT op")
                    tx.run("RELEASE SAVEPOINT op")
                    results.append(Failed(exc))
                    break
                if not keep:
                    tx.run("ROLLBACK TO SAVEPOINT op")
                tx.run("RELEASE SAVEPOINT op")
                if result is not AGAIN:
                    results.append(result)
                    break
            else:
                results.append(Failed(RuntimeError(f"{type(op).__name__} kept conflicting")))
        return results

    def _is_retryable(self, exc: BaseException) -> bool:
        return False

    def _apply(self, tx: Tx, op: Op[Any]) -> tuple[Any, bool]:
        """(result, keep its effects) of one op inside its savepoint."""
        if isinstance(op, ChargeOp):
            return self._charge(tx, op)
        if isinstance(op, CompleteOp):
            done = self._complete(tx, op)
            return done, done
        if isinstance(op, RefundOp):
            refunded = self._refund(tx, op.key_id, op.request_id)
            return refunded, refunded
        if isinstance(op, CreateKeyOp):
            return self._create_key(tx, op), True
        if isinstance(op, TopUpOp):
            tx.run(
                "UPDATE keys SET budget_limit = budget_limit + ? WHERE id = ?",
                (op.queries, op.key_id),
            )
            return self._key(tx, op.key_id), True
        if isinstance(op, RevokeOp):
            tx.run("UPDATE keys SET revoked = 1 WHERE id = ?", (op.key_id,))
            return self._key(tx, op.key_id), True
        if isinstance(op, RegisterOwnerOp):
            self._register(tx, op)
            return None, True
        if isinstance(op, HeartbeatOp):
            cur = tx.run(
                f"UPDATE owners SET last_seen = {self.dialect.now_epoch} WHERE id = ?",
                (op.owner.owner_id,),
            )
            if cur.rowcount != 1:  # reaped while alive (a long pause): register again
                log.warning("owner %s was taken for dead; registering again", op.owner.owner_id)
                self._register(tx, op.owner)
            cutoff = _now() - timedelta(seconds=op.lease_s)
            return self._reap(tx, op.owner.owner_id, op.lease_s, orphans_before=cutoff), True
        if isinstance(op, RecoverOp):
            return self._reap(tx, op.keep, op.lease_s, orphans_before=None), True
        if isinstance(op, ReleaseOwnerOp):
            released = self._refund_owner(tx, op.owner_id)
            tx.run("DELETE FROM owners WHERE id = ?", (op.owner_id,))
            return released, True
        raise TypeError(f"unknown store operation {op!r}")

    # -- the charge protocol ------------------------------------------------------------------

    def _charge(self, tx: Tx, op: ChargeOp) -> tuple[Any, bool]:
        key = tx.one("SELECT * FROM keys WHERE id = ? AND revoked = 0", (op.key_id,))
        if key is None:
            return ChargeResult(ChargeOutcome.UNKNOWN_KEY), False
        if op.idem_key is not None:
            row = tx.one(
                "SELECT * FROM idempotency WHERE key_id = ? AND idem_key = ?",
                (op.key_id, op.idem_key),
            )
            if row is not None:
                return _idem_result(row, op.body_sha256 or "", key), False
        # The one conditional update that makes budgets exact: no row changes -> refused.
        after = tx.one(
            "UPDATE keys SET used = used + ? WHERE id = ? AND used + ? <= budget_limit"
            " RETURNING used, budget_limit",
            (op.queries, op.key_id, op.queries),
        )
        if after is None:
            fresh = tx.one("SELECT used, budget_limit FROM keys WHERE id = ?", (op.key_id,))
            limit, used = int(fresh["budget_limit"]), int(fresh["used"])
            return ChargeResult(ChargeOutcome.INSUFFICIENT, limit, used), False
        now = self.dialect.ts(_now())
        tx.run(
            "INSERT INTO ledger (request_id, key_id, created_at, endpoint, queries, status,"
            " state, owner, idempotency_key) VALUES (?, ?, ?, ?, ?, 'charged', 'in_flight',"
            " ?, ?)",
            (op.request_id, op.key_id, now, op.endpoint, op.queries, op.owner, op.idem_key),
        )
        if op.idem_key is not None:
            cur = tx.run(
                "INSERT INTO idempotency (key_id, idem_key, body_sha256, request_id, state,"
                " owner, created_at) VALUES (?, ?, ?, ?, 'in_flight', ?, ?)"
                " ON CONFLICT (key_id, idem_key) DO NOTHING",
                (op.key_id, op.idem_key, op.body_sha256 or "", op.request_id, op.owner, now),
            )
            if cur.rowcount != 1:  # another replica's charge of this key committed first
                return AGAIN, False
        limit, used = int(after["budget_limit"]), int(after["used"])
        return ChargeResult(ChargeOutcome.CHARGED, limit, used), True

    def _complete(self, tx: Tx, op: CompleteOp) -> bool:
        cur = tx.run(
            "UPDATE ledger SET state = 'done' WHERE request_id = ? AND key_id = ?"
            " AND status = 'charged' AND state = 'in_flight'",
            (op.request_id, op.key_id),
        )
        if cur.rowcount != 1:  # refunded meanwhile (its owner was taken for dead)
            return False
        tx.run(
            "UPDATE idempotency SET state = 'done', response_body = ?"
            " WHERE key_id = ? AND request_id = ?",
            (op.response_body, op.key_id, op.request_id),
        )
        return True

    def _refund(self, tx: Tx, key_id: str, request_id: str) -> bool:
        # Only an in-flight charge: a delivered answer is never refunded, a refund never doubles.
        row = tx.one(
            "UPDATE ledger SET status = 'refunded', state = 'done' WHERE request_id = ?"
            " AND key_id = ? AND status = 'charged' AND state = 'in_flight' RETURNING queries",
            (request_id, key_id),
        )
        if row is None:
            return False
        tx.run("UPDATE keys SET used = used - ? WHERE id = ?", (int(row["queries"]), key_id))
        tx.run("DELETE FROM idempotency WHERE key_id = ? AND request_id = ?", (key_id, request_id))
        return True

    def _refund_rows(self, tx: Tx, rows: list[Any]) -> int:
        # Sorted by key: every writer locks key rows in one order (no deadlock between replicas).
        ordered = sorted(rows, key=lambda r: (r["key_id"], r["request_id"]))
        return sum(self._refund(tx, r["key_id"], r["request_id"]) for r in ordered)

    def _refund_owner(self, tx: Tx, owner_id: str) -> int:
        rows = tx.all(
            "SELECT key_id, request_id FROM ledger"
            " WHERE state = 'in_flight' AND status = 'charged' AND owner = ?",
            (owner_id,),
        )
        return self._refund_rows(tx, rows)

    # -- owners -------------------------------------------------------------------------------

    def _register(self, tx: Tx, op: RegisterOwnerOp) -> None:
        tx.run(
            "INSERT INTO owners (id, server, pid, host, pid_start, started_at, last_seen)"
            f" VALUES (?, ?, ?, ?, ?, ?, {self.dialect.now_epoch}) ON CONFLICT (id) DO UPDATE"
            f" SET pid = excluded.pid, host = excluded.host, pid_start = excluded.pid_start,"
            f" last_seen = {self.dialect.now_epoch}",
            (op.owner_id, op.server, op.pid, op.host, op.pid_start, self.dialect.ts(_now())),
        )

    def _reap(
        self, tx: Tx, keep: str | None, lease_s: float, *, orphans_before: datetime | None
    ) -> int:
        """Refund the charges of dead owners (and drop them), then those of unknown owners
        (``orphans_before``: only charges older than that; None: all)."""
        refunded = 0
        owners = tx.all(
            f"SELECT id, pid, host, pid_start, {self.dialect.now_epoch} - last_seen AS age"
            " FROM owners ORDER BY id"
        )
        for o in owners:
            if o["id"] == keep:
                continue
            alive = owner_alive(
                host=o["host"],
                pid=int(o["pid"]),
                pid_start=None if o["pid_start"] is None else int(o["pid_start"]),
                age_s=float(o["age"]),
                lease_s=lease_s,
            )
            if alive:
                continue
            # The delete decides which reaper handles it (PostgreSQL: the other one waits on the
            # row lock, then finds nothing to delete).
            if tx.run("DELETE FROM owners WHERE id = ?", (o["id"],)).rowcount == 1:
                n = self._refund_owner(tx, o["id"])
                if n:
                    log.warning("refunded %d in-flight charge(s) of dead owner %s", n, o["id"])
                refunded += n
        sql = (
            "SELECT key_id, request_id FROM ledger WHERE state = 'in_flight'"
            " AND status = 'charged' AND owner NOT IN (SELECT id FROM owners) AND owner != ?"
        )
        params: list[Any] = [keep or ""]
        if orphans_before is not None:
            sql += " AND created_at < ?"
            params.append(self.dialect.ts(orphans_before))
        refunded += self._refund_rows(tx, tx.all(sql, params))
        return refunded

    # -- keys -------------------------------------------------------------------------------

    def _create_key(self, tx: Tx, op: CreateKeyOp) -> KeyRecord:
        tx.run(
            "INSERT INTO keys (id, name, key_hash, prefix, budget_limit, created_at,"
            " rate_limit_rps, rate_limit_burst) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                op.key_id,
                op.name,
                op.key_hash,
                op.prefix,
                op.budget,
                self.dialect.ts(_now()),
                op.rate_limit_rps,
                op.rate_limit_burst,
            ),
        )
        record = self._key(tx, op.key_id)
        assert record is not None
        return record

    def _key(self, tx: Tx, key_id: str) -> KeyRecord | None:
        row = tx.one("SELECT * FROM keys WHERE id = ?", (key_id,))
        return key_record(row, self.dialect) if row else None

    # -- the blocking shortcuts -------------------------------------------------------------

    def create_key(
        self,
        name: str,
        budget: int,
        rate_limit_rps: float | None = None,
        rate_limit_burst: int | None = None,
    ) -> tuple[str, KeyRecord]:
        clear = "vk_" + secrets.token_urlsafe(32)
        op = CreateKeyOp(
            key_id="key_" + uuid.uuid4().hex[:16],
            name=name,
            key_hash=hash_key(clear),
            prefix=clear[:10],
            budget=budget,
            rate_limit_rps=rate_limit_rps,
            rate_limit_burst=rate_limit_burst,
        )
        return clear, self.execute(op)

    def top_up(self, key_id: str, queries: int) -> KeyRecord | None:
        return self.execute(TopUpOp(key_id, queries))

    def revoke(self, key_id: str) -> KeyRecord | None:
        return self.execute(RevokeOp(key_id))

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
        op = ChargeOp(key_id, queries, request_id, endpoint, owner, idem_key, body_sha256)
        return self.execute(op)

    def complete(self, key_id: str, request_id: str, response_body: bytes) -> bool:
        return self.execute(CompleteOp(key_id, request_id, response_body))

    def refund(self, key_id: str, request_id: str) -> bool:
        return self.execute(RefundOp(key_id, request_id))

    def register_owner(self, owner_id: str, server: str = "") -> None:
        self.execute(this_owner(owner_id, server))

    def heartbeat(self, owner_id: str, server: str = "", *, lease_s: float = 10.0) -> int:
        return self.execute(HeartbeatOp(this_owner(owner_id, server), lease_s))

    def recover_stale(self, current_owner: str | None = None, *, lease_s: float = 10.0) -> int:
        return self.execute(RecoverOp(current_owner, lease_s))

    def release_owner(self, owner_id: str) -> int:
        return self.execute(ReleaseOwnerOp(owner_id))

    # -- reads ------------------------------------------------------------------------------

    def owners(self) -> list[OwnerRecord]:
        with self._read() as tx:
            rows = tx.all(
                f"SELECT *, {self.dialect.now_epoch} - last_seen AS age FROM owners"
                " ORDER BY started_at, id"
            )
        return [
            OwnerRecord(
                id=r["id"],
                server=r["server"],
                pid=int(r["pid"]),
                host=r["host"],
                started_at=self.dialect.dt(r["started_at"]),
                age_s=float(r["age"]),
            )
            for r in rows
        ]

    def authenticate(self, clear_key: str) -> KeyRecord | None:
        with self._read() as tx:
            row = tx.one("SELECT * FROM keys WHERE key_hash = ?", (hash_key(clear_key),))
        return key_record(row, self.dialect) if row else None

    def get_key(self, key_id: str) -> KeyRecord | None:
        with self._read() as tx:
            return self._key(tx, key_id)

    def list_keys(self) -> list[KeyRecord]:
        with self._read() as tx:
            rows = tx.all("SELECT * FROM keys ORDER BY created_at, id")
        return [key_record(r, self.dialect) for r in rows]

    def lookup_idempotent(
        self, key_id: str, idem_key: str, body_sha256: str
    ) -> ChargeResult | None:
        with self._snapshot() as tx:
            row = tx.one(
                "SELECT * FROM idempotency WHERE key_id = ? AND idem_key = ?", (key_id, idem_key)
            )
            if row is None:
                return None
            key = tx.one("SELECT * FROM keys WHERE id = ?", (key_id,))
        return _idem_result(row, body_sha256, key)

    def usage(
        self, key_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> UsageSummary | None:
        d = self.dialect
        # One read transaction so the totals and the page describe the same instant.
        with self._snapshot() as tx:
            key = tx.one("SELECT * FROM keys WHERE id = ?", (key_id,))
            if key is None:
                return None
            totals = tx.all(
                "SELECT endpoint, SUM(queries) AS q, COUNT(*) AS n FROM ledger"
                " WHERE key_id = ? AND status = 'charged' GROUP BY endpoint",
                (key_id,),
            )
            if cursor:
                rows = tx.all(
                    "SELECT * FROM ledger WHERE key_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
                    (key_id, int(cursor), limit + 1),
                )
            else:
                rows = tx.all(
                    "SELECT * FROM ledger WHERE key_id = ? ORDER BY seq DESC LIMIT ?",
                    (key_id, limit + 1),
                )
        entries = [
            LedgerRow(
                seq=int(r["seq"]),
                request_id=r["request_id"],
                created_at=d.dt(r["created_at"]),
                endpoint=r["endpoint"],
                queries=int(r["queries"]),
                status=r["status"],
                idempotency_key=r["idempotency_key"],
            )
            for r in rows[:limit]
        ]
        return UsageSummary(
            key=key_record(key, d),
            queries_by_endpoint={r["endpoint"]: int(r["q"]) for r in totals},
            requests=sum(int(r["n"]) for r in totals),
            entries=entries,
            next_cursor=str(entries[-1].seq) if len(rows) > limit else None,
        )


def retry_batch(
    run: Callable[[Sequence[Op[Any]]], list[Any]],
    ops: Sequence[Op[Any]],
    is_retryable: Callable[[BaseException], bool],
    attempts: int = 5,
) -> list[Any]:
    """``run(ops)`` again (whole transaction) while it fails with a retryable error."""
    for attempt in range(attempts):
        try:
            return run(ops)
        except Exception as exc:
            if attempt == attempts - 1 or not is_retryable(exc):
                raise
            time.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")
