"""The store interface routes and the CLI depend on; SQLite and PostgreSQL implement it.

The contract that keeps budgets exact: a charge is one atomic conditional update
(``used + n <= limit``) committed together with its ledger row and idempotency row; a refund
flips a ``charged`` row to ``refunded`` only once; a completion only finishes a charge that is
still in flight (never one that was refunded meanwhile).

Writes are **operations** (:class:`ChargeOp`, :class:`CompleteOp`, :class:`RefundOp`, ...), not
method calls that hold a lock: every process has one writer that commits all pending operations
in one durable transaction (group commit, ``vendor_service/metering/groupcommit.py``), each
still an exact conditional update with its own outcome. Callers either wait for an operation
(``store.charge(...)``, the blocking form the CLI uses) or await it without a thread hop::

    result = await store.apply(ChargeOp(key_id, 3, request_id=rid, endpoint=TEXTS, owner=me))

**Ownership.** Every in-flight charge names its owner: one live server process (a uvicorn
worker, a replica's worker) registered in the ``owners`` table with its pid, host and a
heartbeat. When an owner dies, any other process's heartbeat finds it (on the same host by its
pid at once; on another host when its lease runs out), refunds its in-flight charges and frees
their idempotency keys. A live owner's charges are never touched.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Awaitable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from shared_schemas import EmbeddingEndpoint, LedgerStatus
from vendor_service.ratelimit import RateLimiter

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


def hash_key(clear_key: str) -> str:
    """sha256 hex of a clear API key; only this is stored."""
    return hashlib.sha256(clear_key.encode("utf-8")).hexdigest()


# -- errors ----------------------------------------------------------------------------------


class StoreError(Exception):
    """A store that cannot be used as asked; the message is one line meant for an operator."""


class LedgerMissing(StoreError):
    """No ledger where one was expected (and creating one was not asked for)."""


class SchemaMismatch(StoreError):
    """The database's schema version is not the one this code needs."""

    def __init__(self, message: str, *, found: int, needed: int) -> None:
        super().__init__(message)
        self.found = found
        self.needed = needed


class StoreClosed(StoreError):
    """An operation was submitted to a closed store."""


# -- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRecord:
    """One API key as stored (never the clear key)."""

    id: str
    name: str
    prefix: str
    limit: int
    used: int
    created_at: datetime
    revoked: bool
    rate_limit_rps: float | None
    rate_limit_burst: int | None

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


@dataclass(frozen=True)
class LedgerRow:
    """One charged (or later refunded) request."""

    seq: int
    request_id: str
    created_at: datetime
    endpoint: EmbeddingEndpoint
    queries: int
    status: LedgerStatus
    idempotency_key: str | None


@dataclass(frozen=True)
class OwnerRecord:
    """A live (or not yet reaped) server process that may hold in-flight charges."""

    id: str
    server: str  # the `serve` start it belongs to (one per start; several workers share it)
    pid: int
    host: str  # hostname, boot id and pid namespace: where `pid` means this process
    started_at: datetime
    age_s: float  # seconds since its last heartbeat, by the database's clock


class ChargeOutcome(enum.Enum):
    CHARGED = "charged"
    REPLAY = "replay"  # same Idempotency-Key and body, already done: stored response, free
    BODY_MISMATCH = "body_mismatch"  # same Idempotency-Key, different body
    IN_FLIGHT = "in_flight"  # same Idempotency-Key, first request not finished
    INSUFFICIENT = "insufficient"  # used + n > limit: nothing charged
    UNKNOWN_KEY = "unknown_key"  # revoked or deleted between auth and charge


@dataclass(frozen=True)
class ChargeResult:
    outcome: ChargeOutcome
    limit: int = 0
    used: int = 0
    stored_response: bytes | None = None

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


@dataclass
class UsageSummary:
    key: KeyRecord
    queries_by_endpoint: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    entries: list[LedgerRow] = field(default_factory=list)
    next_cursor: str | None = None


# -- operations ------------------------------------------------------------------------------


class Op(Generic[R_co]):
    """A write the store's writer commits in a group; ``R_co`` is its result type."""


@dataclass(frozen=True)
class ChargeOp(Op[ChargeResult]):
    """All-or-nothing charge + ledger row (+ idempotency row) of one request."""

    key_id: str
    queries: int
    request_id: str
    endpoint: EmbeddingEndpoint
    owner: str
    idem_key: str | None = None
    body_sha256: str | None = None


@dataclass(frozen=True)
class CompleteOp(Op[bool]):
    """Mark a charge done and store its response for replays.

    Result: True when the charge was still in flight and is now done; False when it is not
    (refunded meanwhile because its owner was taken for dead): the answer must not be sent.
    """

    key_id: str
    request_id: str
    response_body: bytes


@dataclass(frozen=True)
class RefundOp(Op[bool]):
    """Undo a charge whose response never reached the client. Result: True if it refunded
    (False: unknown, or refunded already: refunds never double)."""

    key_id: str
    request_id: str


@dataclass(frozen=True)
class CreateKeyOp(Op[KeyRecord]):
    key_id: str
    name: str
    key_hash: str
    prefix: str
    budget: int
    rate_limit_rps: float | None
    rate_limit_burst: int | None


@dataclass(frozen=True)
class TopUpOp(Op["KeyRecord | None"]):
    key_id: str
    queries: int


@dataclass(frozen=True)
class RevokeOp(Op["KeyRecord | None"]):
    key_id: str


@dataclass(frozen=True)
class RegisterOwnerOp(Op[None]):
    """Register (or re-register) a process as an owner of charges, with a fresh heartbeat."""

    owner_id: str
    server: str
    pid: int
    host: str
    pid_start: int | None


@dataclass(frozen=True)
class HeartbeatOp(Op[int]):
    """Refresh ``owner_id``'s lease (re-registering it if it was reaped) and reap the dead.

    Result: charges refunded. Dead: an owner on this host whose pid is gone (or is another
    process now), or an owner elsewhere silent for more than ``lease_s``; also charges whose
    owner is unknown, older than ``lease_s`` (left by a process that never registered).
    """

    owner: RegisterOwnerOp
    lease_s: float


@dataclass(frozen=True)
class RecoverOp(Op[int]):
    """Reap every dead owner and every charge of an unregistered owner, whatever its age
    (``serve`` at start, or an operator). ``keep`` is always treated as alive."""

    keep: str | None
    lease_s: float


@dataclass(frozen=True)
class ReleaseOwnerOp(Op[int]):
    """A clean shutdown: refund the owner's leftover in-flight charges, drop its row."""

    owner_id: str


class Store(Protocol):
    """What routes, the meter and the CLI need from the metering database."""

    # -- operations (group-committed writes) ---------------------------------------------------

    def submit(self, op: Op[R]) -> Future[R]:
        """Queue ``op`` for the writer; the future resolves once its transaction committed.

        Thread-safe and non-blocking. A failed op fails its own future only.
        """
        ...

    def apply(self, op: Op[R]) -> Awaitable[R]:
        """``await store.apply(op)``: submit and await it on the event loop, no thread hop.

        Cancelling the awaiting task never leaves a charge taken: an op not started yet is
        dropped, a charge that committed anyway is refunded.
        """
        ...

    def execute(self, op: Op[R]) -> R:
        """Submit and wait (blocking): the form for threads and the CLI."""
        ...

    # -- the blocking shortcuts -------------------------------------------------------------

    def create_key(
        self,
        name: str,
        budget: int,
        rate_limit_rps: float | None = None,
        rate_limit_burst: int | None = None,
    ) -> tuple[str, KeyRecord]:
        """Create a key; returns (clear key, record). The clear key is not stored."""
        ...

    def top_up(self, key_id: str, queries: int) -> KeyRecord | None: ...

    def revoke(self, key_id: str) -> KeyRecord | None: ...

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
        """All-or-nothing charge + ledger row (+ idempotency row), atomically (:class:`ChargeOp`)."""
        ...

    def complete(self, key_id: str, request_id: str, response_body: bytes) -> bool:
        """Mark a charge done and store its response (:class:`CompleteOp`); False: it had been
        refunded, do not deliver."""
        ...

    def refund(self, key_id: str, request_id: str) -> bool:
        """Undo a charge whose response never reached the client (:class:`RefundOp`)."""
        ...

    # -- owners ------------------------------------------------------------------------------

    def register_owner(self, owner_id: str, server: str = "") -> None:
        """Register this process as ``owner_id`` (charges it takes are its own)."""
        ...

    def heartbeat(self, owner_id: str, server: str = "", *, lease_s: float = 10.0) -> int:
        """Refresh the lease of ``owner_id`` and reap dead owners; returns charges refunded."""
        ...

    def recover_stale(self, current_owner: str | None = None, *, lease_s: float = 10.0) -> int:
        """Refund every in-flight charge whose owner is not alive (dead, or never registered);
        ``current_owner`` counts as alive. Returns how many were refunded."""
        ...

    def release_owner(self, owner_id: str) -> int:
        """Clean shutdown of an owner: its leftover in-flight charges refunded, row dropped."""
        ...

    def owners(self) -> list[OwnerRecord]:
        """Registered owners, oldest first."""
        ...

    # -- reads -------------------------------------------------------------------------------

    def authenticate(self, clear_key: str) -> KeyRecord | None:
        """The key record for a clear key, or None when unknown (revoked keys are returned)."""
        ...

    def get_key(self, key_id: str) -> KeyRecord | None: ...

    def list_keys(self) -> list[KeyRecord]: ...

    def lookup_idempotent(
        self, key_id: str, idem_key: str, body_sha256: str
    ) -> ChargeResult | None:
        """Cheap pre-check of an Idempotency-Key; None when the key is unused."""
        ...

    def usage(
        self, key_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> UsageSummary | None:
        """Totals and one page of the ledger, newest first."""
        ...

    def rate_limiter(self) -> RateLimiter:
        """The per-key rate limiter shared by every process on this store."""
        ...

    @property
    def description(self) -> str:
        """Where the store is, for messages (never a password)."""
        ...

    def close(self) -> None: ...
