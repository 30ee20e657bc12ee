"""Request dependencies, chained key -> account -> budget, as ``Annotated`` aliases."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Annotated, Any

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

# Dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in the threadpool,
# and those hops were a large share of a request's CPU (profiled with
# benchmarks/profile_vendor.py). Only store calls leave the loop, through run_in_threadpool.


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


def parse_bearer(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value; 401 otherwise."""
    if not authorization:
        raise ApiError(401, "unauthorized", "missing Authorization: Bearer <key>")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "expected Authorization: Bearer <key>")
    return token.strip()


async def bearer_token(
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> str:
    """The token of ``Authorization: Bearer <token>``; 401 when absent."""
    return parse_bearer(authorization)


TokenDep = Annotated[str, Depends(bearer_token)]


def client_address(scope: Any) -> str:
    """The client's address (uvicorn applies X-Forwarded-For from trusted proxies)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class Authenticator:
    """Who a bearer token is, with two protections in front of the store.

    - Failed attempts (unknown or revoked keys, wrong admin or metrics tokens) are throttled
      per client address with a token bucket (``rate_limit.failed_auth_*``): once the bucket
      is empty that address gets 429 with ``Retry-After``, and unknown tokens from it are not
      even looked up until the wait is over.
    - ``cached`` answers from a short positive cache (sha256 of the token -> key id), used
      only to decide before a body is read whether to read it at all. It is never the
      authority: every route then checks the key in the store (revocation, budget).
    """

    #: Seconds a successful lookup is reused by :meth:`cached`.
    CACHE_TTL_S = 10.0
    _MAX_ENTRIES = 10_000

    def __init__(self, settings: VendorSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._cache: dict[str, tuple[str, float]] = {}  # token sha256 -> (key id, expiry)
        self._blocked: dict[str, float] = {}  # client -> monotonic time the block ends
        self._lock = threading.Lock()

    @staticmethod
    def _digest(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8")).hexdigest()

    def cached(self, token: str) -> str | None:
        """The key id this token authenticated as within ``CACHE_TTL_S``, else None."""
        hit = self._cache.get(self._digest(token))
        if hit is None or hit[1] < time.monotonic():
            return None
        return hit[0]

    def remember(self, token: str, key: KeyRecord) -> None:
        """Cache a successful authentication (bounded: cleared when full)."""
        with self._lock:
            if len(self._cache) >= self._MAX_ENTRIES:
                self._cache.clear()
            self._cache[self._digest(token)] = (key.id, time.monotonic() + self.CACHE_TTL_S)

    def forget(self, key_id: str) -> None:
        """Drop a key from the cache (revoked here; other workers let it expire)."""
        with self._lock:
            for digest, (kid, _) in list(self._cache.items()):
                if kid == key_id:
                    del self._cache[digest]

    def check_blocked(self, client: str) -> None:
        """429 while ``client`` is throttled for failed attempts."""
        until = self._blocked.get(client)
        if until is None:
            return
        left = until - time.monotonic()
        if left <= 0:
            self._blocked.pop(client, None)
            return
        self.metrics.throttled.labels("failed_auth").inc()
        raise self._throttled(left)

    def failed(self, limiter: Any, client: str, error: ApiError) -> ApiError:
        """Count one failed attempt of ``client``: ``error`` (401), or 429 once over the limit.

        ``limiter`` is the app's rate limiter (``take(key_id, rps, burst) -> wait_seconds``),
        so failures are counted wherever it counts (per process, or shared).
        """
        rl = self.settings.rate_limit
        wait = limiter.take(f"failed-auth:{client}", rl.failed_auth_rps, rl.failed_auth_burst)
        if wait <= 0:
            return error
        with self._lock:
            if len(self._blocked) >= self._MAX_ENTRIES:
                self._blocked.clear()
            self._blocked[client] = time.monotonic() + wait
        self.metrics.throttled.labels("failed_auth").inc()
        return self._throttled(wait)

    def _throttled(self, wait: float) -> ApiError:
        return ApiError(
            429,
            "rate_limited",
            "too many failed authentication attempts from this address",
            headers={"Retry-After": retry_after_header(wait)},
        )

    def authenticate(self, client: str, token: str, store: Store, limiter: Any) -> KeyRecord:
        """The key record of ``token`` from the store; 401 (counted) or 429. Blocking: call
        it off the event loop."""
        if self.cached(token) is None:
            self.check_blocked(client)
        key = store.authenticate(token)
        if key is None or key.revoked:
            raise self.failed(
                limiter, client, ApiError(401, "invalid_key", "unknown or revoked API key")
            )
        self.remember(token, key)
        return key

    async def key(self, request_scope: Any, token: str, store: Store, limiter: Any) -> KeyRecord:
        """:meth:`authenticate` in the threadpool."""
        client = client_address(request_scope)
        return await run_in_threadpool(self.authenticate, client, token, store, limiter)


async def get_authenticator(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.authenticator
    return auth


AuthenticatorDep = Annotated[Authenticator, Depends(get_authenticator)]


async def current_key(
    request: Request, token: TokenDep, store: StoreDep, auth: AuthenticatorDep
) -> KeyRecord:
    """The caller's key record; 401 for an unknown or revoked key, 429 after many failures."""
    return await auth.key(request.scope, token, store, request.app.state.rate_limits)


KeyDep = Annotated[KeyRecord, Depends(current_key)]


@dataclass(frozen=True)
class Account:
    """An authenticated key that passed its rate limit."""

    key: KeyRecord


def take_rate_limit(key: KeyRecord, settings: VendorSettings, limiter: Any) -> None:
    """One token of the key's bucket; 429 with Retry-After when it is empty."""
    rps = key.rate_limit_rps or settings.rate_limit.rps
    burst = key.rate_limit_burst or settings.rate_limit.burst
    wait = limiter.take(key.id, rps, burst)
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit of {rps:g} requests/s (burst {burst}) exceeded",
            headers={"Retry-After": retry_after_header(wait)},
        )


async def rate_limited_account(request: Request, key: KeyDep, settings: SettingsDep) -> Account:
    """429 with Retry-After when the key's token bucket is empty."""
    buckets: TokenBuckets = request.app.state.rate_limits
    take_rate_limit(key, settings, buckets)
    return Account(key)


AccountDep = Annotated[Account, Depends(rate_limited_account)]


def is_admin_token(settings: VendorSettings, token: str) -> bool:
    """Whether ``token`` is the admin token (constant-time comparison)."""
    expected = settings.admin_token.get_secret_value() if settings.admin_token else None
    return bool(expected) and secrets.compare_digest(token.encode(), str(expected).encode())


async def admin(
    token: TokenDep,
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    auth: AuthenticatorDep,
) -> None:
    """Admin routes: the admin token; 403 for a valid API key, 401 (or 429) for anything else."""
    if is_admin_token(settings, token):
        return
    client = client_address(request.scope)
    auth.check_blocked(client)
    key = await run_in_threadpool(store.authenticate, token)
    if key is not None and not key.revoked:
        raise ApiError(403, "forbidden", "admin token required")
    raise auth.failed(
        request.app.state.rate_limits,
        client,
        ApiError(401, "unauthorized", "invalid admin token"),
    )


AdminDep = Annotated[None, Depends(admin)]


async def meter(
    request: Request,
    token: TokenDep,
    store: StoreDep,
    rid: RequestIdDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    auth: AuthenticatorDep,
) -> Meter:
    """The meter of this request: charges go to the caller's key, tagged with this instance.

    Nothing blocking happens here: the key is authenticated and rate-limited by the meter in
    the same threadpool hop as the request's decoding and charge (:meth:`Charge.admit`), one
    hop instead of one per dependency and store call.
    """
    client = client_address(request.scope)
    limiter = request.app.state.rate_limits

    def account() -> KeyRecord:
        key = auth.authenticate(client, token, store, limiter)
        take_rate_limit(key, settings, limiter)
        return key

    return Meter(
        key_id=None,
        account=account,
        store=store,
        owner=request.app.state.instance_id,
        request_id=rid,
        metrics=metrics,
        max_items=settings.limits.max_items_per_request,
    )


MeterDep = Annotated[Meter, Depends(meter)]
