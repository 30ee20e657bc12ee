"""Budgets, the per-request ledger and usage reports (``GET /v1/usage``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from shared_schemas.endpoints import EmbeddingEndpoint

#: A ledger row's state: charged, or refunded (the client got no answer).
LedgerStatus = Literal["charged", "refunded"]


class QueryUsage(BaseModel):
    queries: int = Field(..., ge=0, description="Queries charged by this request (0 on replay).")


class BudgetPublic(BaseModel):
    limit: int = Field(..., ge=0, description="Total queries the key may spend.")
    used: int = Field(..., ge=0)
    remaining: int = Field(..., ge=0)


class LedgerEntryPublic(BaseModel):
    """One charged request. A refunded charge stays in the ledger with status `refunded`."""

    request_id: str
    created_at: datetime
    endpoint: EmbeddingEndpoint
    queries: int = Field(..., ge=0)
    status: LedgerStatus
    idempotency_key: str | None = None


class UsageResponse(BaseModel):
    key_id: str
    name: str
    budget: BudgetPublic
    queries_by_endpoint: dict[str, int] = Field(
        default_factory=dict, description="Charged (not refunded) queries per endpoint."
    )
    requests: int = Field(..., ge=0, description="Charged requests, refunds excluded.")
    entries: list[LedgerEntryPublic] = Field(default_factory=list)
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` to read the next page; null on the last page."
    )
