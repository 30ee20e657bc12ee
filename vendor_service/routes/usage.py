"""``GET /v1/usage``: the caller's own totals and paged ledger."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from shared_schemas import BudgetPublic, ErrorResponse, LedgerEntryPublic, UsageResponse
from vendor_service.deps import KeyDep, MetricsDep, SettingsDep, StoreDep
from vendor_service.errors import ApiError
from vendor_service.metering import Store, UsageSummary
from vendor_service.metrics import Metrics
from vendor_service.ratelimit import retry_after_header
from vendor_service.settings import VendorSettings

router = APIRouter(prefix="/v1", tags=["usage"])

LimitQuery = Annotated[int, Query(ge=1, le=1000, description="Ledger rows per page.")]
CursorQuery = Annotated[
    str | None, Query(pattern=r"^[0-9]{1,18}$", description="`next_cursor` of the last page.")
]


def throttle_usage_read(
    request: Request, key_id: str, settings: VendorSettings, metrics: Metrics
) -> None:
    """429 once ``key_id`` reads its usage (here or on the dashboard) too often.

    Its own bucket per key: reading the ledger is a database scan, so it is throttled, but
    apart from the embedding requests' limit (a slow key can still read its usage).
    """
    rl = settings.rate_limit
    wait = request.app.state.rate_limits.take(f"usage:{key_id}", rl.usage_rps, rl.usage_burst)
    if wait > 0:
        metrics.throttled.labels("usage").inc()
        raise ApiError(
            429,
            "rate_limited",
            f"usage reads are limited to {rl.usage_rps:g} requests/s (burst {rl.usage_burst})",
            headers={"Retry-After": retry_after_header(wait)},
        )


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


@router.get(
    "/usage",
    response_model=UsageResponse,
    responses={s: {"model": ErrorResponse} for s in (401, 429)},
)
async def own_usage(
    request: Request,
    key: KeyDep,
    store: StoreDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
) -> UsageResponse:
    """Your key's budget, charged totals per endpoint and ledger (newest first, paged)."""
    throttle_usage_read(request, key.id, settings, metrics)
    return await read_usage(store, key.id, limit, cursor)
