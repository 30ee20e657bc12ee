"""Keys, budgets, the ledger, idempotency records and the owners of in-flight charges behind
one small ``Store`` interface (SQLite on one machine, PostgreSQL for many replicas)."""

from __future__ import annotations

from pathlib import Path

from vendor_service.metering.sqlite import SQLiteStore
from vendor_service.metering.store import (
    ChargeOp,
    ChargeOutcome,
    ChargeResult,
    CompleteOp,
    KeyRecord,
    LedgerMissing,
    LedgerRow,
    Op,
    OwnerRecord,
    RefundOp,
    SchemaMismatch,
    Store,
    StoreClosed,
    StoreError,
    UsageSummary,
    hash_key,
)

#: The SQLite ledger's file name inside the data dir.
LEDGER_FILE = "ledger.sqlite3"


def is_postgres_url(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("postgresql://", "postgres://"))


def open_store(
    data_dir: Path,
    database_url: str | None = None,
    *,
    create: bool = True,
    upgrade: bool = False,
) -> Store:
    """The store the settings name: PostgreSQL at ``database_url``, else the data dir's SQLite.

    Args:
        data_dir: holds ``ledger.sqlite3`` when there is no ``database_url``.
        database_url: ``postgresql://...``; None or empty: SQLite.
        create: create a missing ledger (an empty database's schema); else ``LedgerMissing``.
        upgrade: apply pending migrations; else an older schema is ``SchemaMismatch``.

    Raises:
        StoreError: a missing ledger, a schema of another version, a bad URL.
    """
    if database_url:
        if not is_postgres_url(database_url):
            raise StoreError("--database-url must start with postgresql:// (or be unset)")
        from vendor_service.metering.postgres import PostgresStore  # psycopg only when used

        return PostgresStore(database_url, create=create, upgrade=upgrade)
    return SQLiteStore(data_dir / LEDGER_FILE, create=create, upgrade=upgrade)


__all__ = [
    "LEDGER_FILE",
    "ChargeOp",
    "ChargeOutcome",
    "ChargeResult",
    "CompleteOp",
    "KeyRecord",
    "LedgerMissing",
    "LedgerRow",
    "Op",
    "OwnerRecord",
    "RefundOp",
    "SQLiteStore",
    "SchemaMismatch",
    "Store",
    "StoreClosed",
    "StoreError",
    "UsageSummary",
    "hash_key",
    "is_postgres_url",
    "open_store",
]
