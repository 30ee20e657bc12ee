"""``GET /v1/usage``: the caller's own totals and paged ledger."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from shared_schemas import BudgetPublic, ErrorResponse, LedgerEntryPublic, UsageResponse
from vendor_service.deps import KeyDep, StoreDep
from vendor_service.errors import ApiError
from vendor_service.metering import Store, UsageSummary

router = APIRouter(prefix="/v1", tags=["usage"])

LimitQuery = Annotated[int, Query(ge=1, le=1000, description="Ledger rows per page.")]
CursorQuery = Annotated[
    str | None, Query(pattern=r"^[0-9]{1,18}$", description="`next_cursor` of the last page.")
]


def usage_response(summary: UsageSummary) -> UsageResponse:
    key = summary.key
    return UsageResponse(
        key_id=key.id,
        name=key.name,
        budget=BudgetPublic(limit=key.limit, used=key.used, remaining=key.remaining),
        queries_by_endpoint=summary.queries_by_endpoint,
        requests=summary.requests,
        entries=[
            LedgerEntryPublic(
                request_id=e.request_id,
                created_at=e.created_at,
                endpoint=e.endpoint,
                queries=e.queries,
                status=e.status,
                idempotency_key=e.idempotency_key,
            )
            for e in summary.entries
        ],
        next_cursor=summary.next_cursor,
    )


async def read_usage(store: Store, key_id: str, limit: int, cursor: str | None) -> UsageResponse:
    summary = await run_in_threadpool(store.usage, key_id, limit=limit, cursor=cursor)
    if summary is None:
        raise ApiError(404, "not_found", f"no key {key_id!r}")
    return usage_response(summary)


@router.get("/usage", response_model=UsageResponse, responses={401: {"model": ErrorResponse}})
async def own_usage(
    key: KeyDep, store: StoreDep, limit: LimitQuery = 100, cursor: CursorQuery = None
) -> UsageResponse:
    """Your key's budget, charged totals per endpoint and ledger (newest first, paged)."""
    return await read_usage(store, key.id, limit, cursor)
