"""Keys, budgets, the ledger and idempotency records behind one small ``Store`` interface."""

from vendor_service.metering.sqlite import SQLiteStore
from vendor_service.metering.store import (
    ChargeOutcome,
    ChargeResult,
    KeyRecord,
    LedgerRow,
    Store,
    UsageSummary,
    hash_key,
)

__all__ = [
    "ChargeOutcome",
    "ChargeResult",
    "KeyRecord",
    "LedgerRow",
    "SQLiteStore",
    "Store",
    "UsageSummary",
    "hash_key",
]
