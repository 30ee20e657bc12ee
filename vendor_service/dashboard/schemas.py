"""What ``GET /dashboard/api/usage`` answers: keys with their budgets and a series per key.

These models describe the vendor's own page's data source; they stay next to it (not in
``shared_schemas``) because no client of the embedding API reads them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from shared_schemas import KeyPublic

#: The chart's bin width: ``hour`` (the last 24 hours) or ``day`` (the last 30 days), in UTC.
Period = Literal["hour", "day"]

#: Who reads the page: the admin token (every key) or an API key (its own only).
Role = Literal["admin", "key"]


class DashboardKey(BaseModel):
    """One key: its budget and rate limit, its totals and its queries per bin."""

    key: KeyPublic
    queries_by_endpoint: dict[str, int] = Field(
        default_factory=dict, description="Charged (not refunded) queries per endpoint, ever."
    )
    requests: int = Field(..., ge=0, description="Charged requests, ever (refunds excluded).")
    series: list[int] = Field(
        ..., description="Charged queries per bin of `bin_starts`, oldest first."
    )


class DashboardResponse(BaseModel):
    """The dashboard's data: the caller's view of the ledger at ``generated_at``."""

    role: Role
    period: Period
    bin_seconds: int = Field(..., description="Width of one bin (3600 or 86400).")
    bin_starts: list[datetime] = Field(..., description="Start of each bin (UTC), oldest first.")
    generated_at: datetime
    keys: list[DashboardKey]
