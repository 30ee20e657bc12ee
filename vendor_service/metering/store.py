"""The store interface routes depend on; SQLite implements it, PostgreSQL could.

Every method is synchronous and self-contained (one transaction); routes call them from a
threadpool. The contract that keeps budgets exact: ``charge`` is one atomic conditional update
(``used + n <= limit``) committed together with its ledger row and idempotency row.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from shared_schemas import EmbeddingEndpoint, LedgerStatus


def hash_key(clear_key: str) -> str:
    """sha256 hex of a clear API key; only this is stored."""
    return hashlib.sha256(clear_key.encode("utf-8")).hexdigest()


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


class Store(Protocol):
    """What routes and the CLI need from the metering database."""

    def create_key(
        self,
        name: str,
        budget: int,
        rate_limit_rps: float | None = None,
        rate_limit_burst: int | None = None,
    ) -> tuple[str, KeyRecord]:
        """Create a key; returns (clear key, record). The clear key is not stored."""
        ...

    def authenticate(self, clear_key: str) -> KeyRecord | None:
        """The key record for a clear key, or None when unknown (revoked keys are returned)."""
        ...

    def get_key(self, key_id: str) -> KeyRecord | None: ...

    def list_keys(self) -> list[KeyRecord]: ...

    def top_up(self, key_id: str, queries: int) -> KeyRecord | None: ...

    def revoke(self, key_id: str) -> KeyRecord | None: ...

    def lookup_idempotent(
        self, key_id: str, idem_key: str, body_sha256: str
    ) -> ChargeResult | None:
        """Cheap pre-check of an Idempotency-Key; None when the key is unused."""
        ...

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
        """All-or-nothing charge + ledger row (+ idempotency row), atomically."""
        ...

    def complete(self, key_id: str, request_id: str, response_body: bytes) -> None:
        """Mark a charge done and store its response for idempotent replay."""
        ...

    def refund(self, key_id: str, request_id: str) -> None:
        """Undo a charge whose response never reached the client."""
        ...

    def recover_stale(self, current_owner: str) -> int:
        """Refund every in-flight charge owned by another instance; returns how many."""
        ...

    def usage(
        self, key_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> UsageSummary | None:
        """Totals and one page of the ledger, newest first."""
        ...

    def close(self) -> None: ...
