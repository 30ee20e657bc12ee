"""The page, its two static files, and its one JSON route, under the API's access rules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from shared_schemas import ErrorResponse
from vendor_service.dashboard.schemas import DashboardKey, DashboardResponse, Period
from vendor_service.dashboard.summary import PERIODS, bin_starts, key_usage
from vendor_service.deps import (
    AuthenticatorDep,
    MetricsDep,
    SettingsDep,
    StoreDep,
    TokenDep,
    is_admin_token,
)
from vendor_service.errors import ApiError
from vendor_service.metering import KeyRecord, Store
from vendor_service.routes.admin import key_public
from vendor_service.routes.usage import throttle_usage_read
from vendor_service.settings import VendorSettings

router = APIRouter(tags=["dashboard"])

_STATIC = files("vendor_service.dashboard") / "static"

#: The static files the page loads: name -> media type.
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}

#: The page may load only what the vendor serves (a browser-enforced "no external assets");
#: no inline script or style, no framing, no form posted anywhere (the token never leaves
#: the page except as an Authorization header).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)

_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@dataclass(frozen=True)
class Viewer:
    """Who reads the dashboard: the admin (``key`` None) or the holder of ``key``."""

    key: KeyRecord | None

    @property
    def is_admin(self) -> bool:
        return self.key is None


async def viewer(
    request: Request,
    token: TokenDep,
    settings: SettingsDep,
    store: StoreDep,
    auth: AuthenticatorDep,
    metrics: MetricsDep,
) -> Viewer:
    """The admin token, or a valid (not revoked) API key; 401 for anything else.

    A key goes through the API's own authentication (failed attempts counted per address and
    throttled with 429, as on ``/v1/*``) and its usage reads share ``/v1/usage``'s bucket.
    """
    if is_admin_token(settings, token):
        return Viewer(None)
    key = await auth.key(request.scope, token, store, request.app.state.rate_limits)
    throttle_usage_read(request, key.id, settings, metrics)
    return Viewer(key)


ViewerDep = Annotated[Viewer, Depends(viewer)]
PeriodQuery = Annotated[Period, Query(description="Bin width: `hour` (24 bins) or `day` (30).")]
KeyIdQuery = Annotated[
    str | None,
    Query(
        max_length=100,
        description="Only this key (admin: any key; an API key: its own id, else 403).",
    ),
]


@router.get("/dashboard", include_in_schema=False)
async def dashboard_page() -> HTMLResponse:
    """The usage page (it holds no data: it asks for a token and reads the JSON route)."""
    html = (_STATIC / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(html, headers={**_PAGE_HEADERS, "Cache-Control": "no-cache"})


@router.get("/dashboard/static/{name}", include_in_schema=False)
async def dashboard_asset(name: str) -> Response:
    """The page's script and style sheet."""
    media_type = ASSETS.get(name)
    if media_type is None:  # a fixed list: no path ever reaches the file system
        raise ApiError(404, "not_found", f"no dashboard asset {name!r}")
    body = (_STATIC / name).read_bytes()
    return Response(
        body,
        media_type=media_type,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
    )


@router.get(
    "/dashboard/api/usage",
    response_model=DashboardResponse,
    responses={s: {"model": ErrorResponse} for s in (401, 403, 404, 429)},
)
async def dashboard_usage(
    who: ViewerDep,
    store: StoreDep,
    settings: SettingsDep,
    response: Response,
    period: PeriodQuery = "hour",
    key_id: KeyIdQuery = None,
) -> DashboardResponse:
    """Budget, use and rate limit of every key (admin) or your own, with queries per bin."""
    if who.key is not None and key_id is not None and key_id != who.key.id:
        # The same answer whether that key exists or not: nothing about other keys leaks.
        raise ApiError(403, "forbidden", "an API key sees only its own usage")
    # Private and per token: never cached, by the browser or anything in between.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Vary"] = "Authorization"
    return await run_in_threadpool(
        build_dashboard, store, settings, who, period, key_id, datetime.now(timezone.utc)
    )


def build_dashboard(
    store: Store,
    settings: VendorSettings,
    who: Viewer,
    period: Period,
    key_id: str | None,
    now: datetime,
) -> DashboardResponse:
    """The dashboard's data for ``who``: the keys it may see (``key_id`` only, if given).

    Raises:
        ApiError: 404 when the admin names a key that does not exist.
    """
    if who.key is not None:
        ids = [who.key.id]
    elif key_id is not None:
        ids = [key_id]
    else:
        ids = [k.id for k in store.list_keys()]
    step, _ = PERIODS[period]
    starts = bin_starts(period, now)
    keys = []
    for one in ids:
        found = key_usage(store, one, starts, step)
        if found is None:
            raise ApiError(404, "not_found", f"no key {one!r}")
        summary, series = found
        keys.append(
            DashboardKey(
                key=key_public(summary.key, settings),
                queries_by_endpoint=summary.queries_by_endpoint,
                requests=summary.requests,
                series=series,
            )
        )
    return DashboardResponse(
        role="admin" if who.is_admin else "key",
        period=period,
        bin_seconds=int(step.total_seconds()),
        bin_starts=starts,
        generated_at=now,
        keys=keys,
    )
