"""``/v1/admin/keys``: key management with the admin token."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from shared_schemas import (
    BudgetPublic,
    ErrorResponse,
    KeyCreateRequest,
    KeyCreateResponse,
    KeyListResponse,
    KeyPublic,
    KeyTopUpRequest,
    UsageResponse,
)
from vendor_service.deps import AdminDep, AuthenticatorDep, SettingsDep, StoreDep
from vendor_service.errors import ApiError
from vendor_service.metering import KeyRecord
from vendor_service.routes.usage import CursorQuery, LimitQuery, read_usage
from vendor_service.settings import VendorSettings

router = APIRouter(
    prefix="/v1/admin",
    tags=["admin"],
    # 400: a body that is not JSON; 413: a body over the size limit (both before validation);
    # 429: an address that keeps sending wrong tokens.
    responses={s: {"model": ErrorResponse} for s in (400, 401, 403, 404, 413, 429)},
)


def key_public(key: KeyRecord, settings: VendorSettings) -> KeyPublic:
    return KeyPublic(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        budget=BudgetPublic(limit=key.limit, used=key.used, remaining=key.remaining),
        created_at=key.created_at,
        revoked=key.revoked,
        rate_limit_rps=key.rate_limit_rps or settings.rate_limit.rps,
        rate_limit_burst=key.rate_limit_burst or settings.rate_limit.burst,
    )


def _found(key: KeyRecord | None, key_id: str) -> KeyRecord:
    if key is None:
        raise ApiError(404, "not_found", f"no key {key_id!r}")
    return key


@router.post("/keys", response_model=KeyCreateResponse, status_code=201)
async def create_key(
    body: KeyCreateRequest, _: AdminDep, store: StoreDep, settings: SettingsDep
) -> KeyCreateResponse:
    """Create a key with a budget; the clear key is in this response only."""
    clear, key = await run_in_threadpool(
        store.create_key, body.name, body.budget, body.rate_limit_rps, body.rate_limit_burst
    )
    return KeyCreateResponse(key=clear, info=key_public(key, settings))


@router.get("/keys", response_model=KeyListResponse)
async def list_keys(_: AdminDep, store: StoreDep, settings: SettingsDep) -> KeyListResponse:
    """Every key (hashes and clear keys are never shown)."""
    keys = await run_in_threadpool(store.list_keys)
    return KeyListResponse(data=[key_public(k, settings) for k in keys])


@router.post("/keys/{key_id}/topup", response_model=KeyPublic)
async def top_up(
    key_id: str, body: KeyTopUpRequest, _: AdminDep, store: StoreDep, settings: SettingsDep
) -> KeyPublic:
    """Add queries to a key's budget limit."""
    key = await run_in_threadpool(store.top_up, key_id, body.queries)
    return key_public(_found(key, key_id), settings)


@router.post("/keys/{key_id}/revoke", response_model=KeyPublic)
async def revoke(
    key_id: str, _: AdminDep, store: StoreDep, settings: SettingsDep, auth: AuthenticatorDep
) -> KeyPublic:
    """Revoke a key; it gets 401 from then on (its ledger is kept)."""
    key = await run_in_threadpool(store.revoke, key_id)
    auth.forget(key_id)
    return key_public(_found(key, key_id), settings)


@router.delete("/keys/{key_id}", response_model=KeyPublic)
async def delete_key(
    key_id: str, _: AdminDep, store: StoreDep, settings: SettingsDep, auth: AuthenticatorDep
) -> KeyPublic:
    """Same as revoke (keys are never erased: the ledger refers to them)."""
    return await revoke(key_id, _, store, settings, auth)


@router.get("/keys/{key_id}/usage", response_model=UsageResponse)
async def key_usage(
    key_id: str, _: AdminDep, store: StoreDep, limit: LimitQuery = 100, cursor: CursorQuery = None
) -> UsageResponse:
    """Any key's budget, totals and ledger."""
    return await read_usage(store, key_id, limit, cursor)
