"""Request dependencies, chained key -> account -> budget, as ``Annotated`` aliases."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from starlette.concurrency import run_in_threadpool

from vendor_service.errors import ApiError
from vendor_service.inference.batcher import Batcher
from vendor_service.inference.loading import LoadedModel
from vendor_service.meter import Meter
from vendor_service.metering import KeyRecord, Store
from vendor_service.metrics import Metrics
from vendor_service.ratelimit import TokenBuckets, retry_after_header
from vendor_service.settings import VendorSettings

# Dependencies that only read app state or compute are ``async def``: FastAPI runs a plain
# ``def`` dependency in the threadpool, and those hops were a large share of a request's CPU
# (profiled with benchmarks/profile_vendor.py). Only the ones that touch SQLite leave the loop.


async def get_settings(request: Request) -> VendorSettings:
    settings: VendorSettings = request.app.state.settings
    return settings


async def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_model(request: Request) -> LoadedModel:
    model: LoadedModel | None = getattr(request.app.state, "model", None)
    if model is None:
        raise ApiError(503, "not_ready", "the model is not loaded yet")
    return model


async def get_batcher(request: Request) -> Batcher:
    batcher: Batcher | None = getattr(request.app.state, "batcher", None)
    if batcher is None:
        raise ApiError(503, "not_ready", "the inference worker is not running")
    return batcher


async def request_id(request: Request) -> str:
    rid: str = request.state.request_id
    return rid


SettingsDep = Annotated[VendorSettings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ModelDep = Annotated[LoadedModel, Depends(get_model)]
BatcherDep = Annotated[Batcher, Depends(get_batcher)]
RequestIdDep = Annotated[str, Depends(request_id)]


async def bearer_token(
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> str:
    """The token of ``Authorization: Bearer <token>``; 401 when absent."""
    if not authorization:
        raise ApiError(401, "unauthorized", "missing Authorization: Bearer <key>")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "expected Authorization: Bearer <key>")
    return token.strip()


TokenDep = Annotated[str, Depends(bearer_token)]


async def current_key(token: TokenDep, store: StoreDep) -> KeyRecord:
    """The caller's key record; 401 for an unknown or revoked key."""
    key = await run_in_threadpool(store.authenticate, token)
    if key is None or key.revoked:
        raise ApiError(401, "invalid_key", "unknown or revoked API key")
    return key


KeyDep = Annotated[KeyRecord, Depends(current_key)]


@dataclass(frozen=True)
class Account:
    """An authenticated key that passed its rate limit."""

    key: KeyRecord


async def rate_limited_account(request: Request, key: KeyDep, settings: SettingsDep) -> Account:
    """429 with Retry-After when the key's token bucket is empty."""
    buckets: TokenBuckets = request.app.state.rate_limits
    rps = key.rate_limit_rps or settings.rate_limit.rps
    burst = key.rate_limit_burst or settings.rate_limit.burst
    wait = buckets.take(key.id, rps, burst)
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit of {rps:g} requests/s (burst {burst}) exceeded",
            headers={"Retry-After": retry_after_header(wait)},
        )
    return Account(key)


AccountDep = Annotated[Account, Depends(rate_limited_account)]


def admin(token: TokenDep, request: Request, settings: SettingsDep, store: StoreDep) -> None:
    """Admin routes: the admin token; 403 for a valid API key, 401 for anything else."""
    expected = settings.admin_token.get_secret_value() if settings.admin_token else None
    if expected and secrets.compare_digest(token.encode(), expected.encode()):
        return
    key = store.authenticate(token)
    if key is not None and not key.revoked:
        raise ApiError(403, "forbidden", "admin token required")
    raise ApiError(401, "unauthorized", "invalid admin token")


AdminDep = Annotated[None, Depends(admin)]


async def meter(
    request: Request,
    account: AccountDep,
    store: StoreDep,
    rid: RequestIdDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> Meter:
    """The meter of this request: charges go to the caller's key, tagged with this instance."""
    return Meter(
        key_id=account.key.id,
        store=store,
        owner=request.app.state.instance_id,
        request_id=rid,
        metrics=metrics,
        max_items=settings.limits.max_items_per_request,
    )


MeterDep = Annotated[Meter, Depends(meter)]
