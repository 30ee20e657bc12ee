"""The metering protocol of one embedding request: check, charge, complete or refund.

A :class:`Meter` is the last link of the dependency chain (key -> account -> budget). A route
asks it for a :class:`Charge` and uses that as an async context manager::

    charge = meter.charge(TEXTS, body, len(body.texts), idempotency_key)
    inputs = await charge.admit(decode)    # one threadpool hop: authenticate, rate-limit,
                                           # answer a finished retry (free), 402 before
                                           # decoding, decode (invalid input charges
                                           # nothing), charge all-or-nothing
    async with charge:                     # refunded on any error from here on
        vectors = ...
        return await charge.complete(response)  # stored for replays

(``check_idempotency_key``, ``check_budget`` and a charge on entering ``async with`` are the
same steps one at a time, for callers that hold a key id already.)

Every outcome of the store becomes an HTTP answer here and nowhere else (:func:`refusal`).

Both wire formats go through this one charge path: the native routes (``api="native"``) and
the OpenAI-compatible ``POST /v1/embeddings`` (``api="openai"``). They differ only in what is
stored for a replay and in the scope of an ``Idempotency-Key``: a key names one request *to
one API*, so the same key sent to both is two requests (each charged once), and the OpenAI
route's keys are recorded in the ledger as ``openai:<key>``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, TypeVar

from fastapi.responses import Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from shared_schemas import BudgetPublic, EmbeddingEndpoint
from vendor_service.errors import ApiError
from vendor_service.metering import ChargeOutcome, ChargeResult, KeyRecord, Store
from vendor_service.metrics import Metrics

T = TypeVar("T")

#: The wire format of a metered request: the native routes or the OpenAI-compatible one.
WireApi = Literal["native", "openai"]


class ClientDisconnected(Exception):
    """The client went away before its answer was stored: the charge is refunded.

    A request becomes billable when its answer is stored (:meth:`Charge.complete`); until then
    a disconnect refunds it (and drops its job if the model has not taken it yet). After that,
    the stored answer is what an ``Idempotency-Key`` retry gets, free.
    """

    def __init__(self, stage: str) -> None:
        super().__init__(f"client disconnected ({stage})")
        self.stage = stage


class Replayed(Exception):
    """Answer with a stored response (an idempotent retry): nothing runs, nothing is charged.

    Raised rather than returned because a retry can be recognised at two points (before the
    inputs are decoded, and atomically at the charge); the app's handler sends ``response``.
    """

    def __init__(self, response: Response) -> None:
        super().__init__("idempotent replay")
        self.response = response


def metered_headers(charged: int, remaining: int) -> dict[str, str]:
    """The headers every metered response carries."""
    return {"X-Queries-Charged": str(charged), "X-Budget-Remaining": str(remaining)}


def refusal(result: ChargeResult, queries: int) -> ApiError:
    """The error for a charge the store did not take (or an idempotency conflict)."""
    headers = metered_headers(0, result.remaining)
    if result.outcome is ChargeOutcome.BODY_MISMATCH:
        return ApiError(
            422, "idempotency_key_reused", "Idempotency-Key was used with a different body", headers
        )
    if result.outcome is ChargeOutcome.IN_FLIGHT:
        headers["Retry-After"] = "1"  # the first request usually finishes within a second
        return ApiError(
            409,
            "idempotency_in_flight",
            "a request with this Idempotency-Key is in flight",
            headers,
        )
    if result.outcome is ChargeOutcome.INSUFFICIENT:
        return ApiError(
            402,
            "budget_exceeded",
            f"request needs {queries} queries; {result.remaining} remain",
            headers,
        )
    return ApiError(401, "invalid_key", "unknown or revoked API key")


def _replay(result: ChargeResult, api: WireApi) -> Replayed:
    body: dict[str, Any] = json.loads(result.stored_response or b"{}")
    # A replay charges nothing, and its usage says so in the format of its API.
    if api == "openai":
        body["usage"] = {"prompt_tokens": 0, "total_tokens": 0}
    else:
        body["usage"] = {"queries": 0}
        body["budget"] = {"limit": result.limit, "used": result.used, "remaining": result.remaining}
    return Replayed(
        Response(
            json.dumps(body).encode(),
            media_type="application/json",
            headers={**metered_headers(0, result.remaining), "Idempotent-Replayed": "true"},
        )
    )


class Charge:
    """One request's charge; see the module docstring for the order of the calls."""

    def __init__(
        self,
        meter: Meter,
        endpoint: EmbeddingEndpoint,
        queries: int,
        body_sha256: str,
        idempotency_key: str | None,
        api: WireApi = "native",
    ) -> None:
        self._meter = meter
        self.api = api
        self.endpoint = endpoint
        self.queries = queries
        self._body_sha256 = body_sha256
        self._idem_key = idempotency_key
        self._result: ChargeResult | None = None
        self._completed = False

    @property
    def budget(self) -> BudgetPublic:
        """The key's budget right after this charge (only inside ``async with``)."""
        if self._result is None:
            raise RuntimeError("not charged yet")
        r = self._result
        return BudgetPublic(limit=r.limit, used=r.used, remaining=r.remaining)

    # -- the blocking steps; :meth:`admit` runs them in one threadpool hop -------------------

    def _lookup_idempotency_key(self) -> None:
        if self._idem_key is None:
            return
        m = self._meter
        m.authenticate()
        seen = m.store.lookup_idempotent(m.account_id, self._idem_key, self._body_sha256)
        if seen is None:
            return
        if seen.outcome is ChargeOutcome.REPLAY:
            raise _replay(seen, self.api)
        raise refusal(seen, self.queries)

    def _check_budget(self) -> None:
        m = self._meter
        m.authenticate()
        # The record the meter authenticated with in this hop is as fresh as a second read.
        key = m.key if m.key is not None else m.store.get_key(m.account_id)
        if key is None or key.revoked:
            raise ApiError(401, "invalid_key", "unknown or revoked API key")
        if key.used + self.queries > key.limit:
            raise refusal(
                ChargeResult(ChargeOutcome.INSUFFICIENT, key.limit, key.used), self.queries
            )

    def _take(self) -> None:
        m = self._meter
        m.authenticate()  # a no-op once done (each step may be the first one called)
        result = m.store.charge(
            m.account_id,
            self.queries,
            request_id=m.request_id,
            endpoint=self.endpoint,
            owner=m.owner,
            idem_key=self._idem_key,
            body_sha256=self._body_sha256,
        )
        if result.outcome is ChargeOutcome.REPLAY:
            raise _replay(result, self.api)
        if result.outcome is not ChargeOutcome.CHARGED:
            raise refusal(result, self.queries)
        self._result = result

    def _admit(self, prepare: Callable[[], T]) -> T:
        self._meter.authenticate()
        self._lookup_idempotency_key()
        self._check_budget()
        inputs = prepare()
        self._take()
        return inputs

    async def admit(self, prepare: Callable[[], T]) -> T:
        """Everything before inference, in one threadpool hop; returns ``prepare()``.

        In order: authenticate and rate-limit the key (for a meter built from a token), answer
        a finished retry for free, refuse what the budget cannot cover (402 before any
        decoding), run ``prepare`` (decode / tokenize: invalid input charges nothing), and
        charge all-or-nothing. Then ``async with charge`` enters without another store call.

        Raises:
            Replayed: a finished retry (same key and body).
            ApiError: 401/429 for the key, 409/422 for its idempotency key, 402, or what
                ``prepare`` refuses.
        """
        try:
            return await run_in_threadpool(self._admit, prepare)
        except BaseException:
            # A cancellation waits for the thread (anyio does not abandon it), so a charge it
            # made is seen here and undone: no request is left charged without its context.
            if self._result is not None and not self._completed:
                self._meter.store.refund(self._meter.account_id, self._meter.request_id)
                self._result = None
            raise

    async def check_idempotency_key(self) -> None:
        """Cheap early answer for a retry, before its inputs are decoded.

        Raises:
            Replayed: the same key and body finished before.
            ApiError: the key is in flight (409) or was used with another body (422).
        """
        await run_in_threadpool(self._lookup_idempotency_key)

    async def check_budget(self) -> None:
        """Cheap refusal before the inputs are decoded: the key's budget against the item count.

        Read from the store (not a cache), so a top-up is seen at once; the charge itself
        re-checks atomically, this only saves decoding a request that cannot be charged.

        Raises:
            ApiError: 401 for a revoked or deleted key, 402 when the items do not fit.
        """
        await run_in_threadpool(self._check_budget)

    async def __aenter__(self) -> Charge:  # noqa: PYI034
        """Charge all-or-nothing (one atomic conditional update); the store re-checks the key.

        After :meth:`admit` the charge is taken already and nothing is awaited here.
        """
        if self._result is None:
            await run_in_threadpool(self._take)
        return self

    async def complete(self, response: BaseModel) -> Response:
        """Store the response (for replays), mark the charge done, and answer with it."""
        m = self._meter
        body = response.model_dump_json().encode()
        await run_in_threadpool(m.store.complete, m.account_id, m.request_id, body)
        self._completed = True
        m.metrics.queries_charged.labels(self.endpoint).inc(self.queries)
        return Response(
            body,
            media_type="application/json",
            headers=metered_headers(self.queries, self.budget.remaining),
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._completed:
            return
        # The client gets no embeddings, so it pays nothing.
        m = self._meter
        if isinstance(exc, Exception):
            await run_in_threadpool(m.store.refund, m.account_id, m.request_id)
        else:
            # Cancellation or shutdown: a blocking call on purpose, it must run even while
            # this task is being cancelled (an await could be cancelled again).
            m.store.refund(m.account_id, m.request_id)
        if exc is None:
            raise RuntimeError("a charge was left without complete(); it was refunded")
        if isinstance(exc, ClientDisconnected):
            m.metrics.abandoned.labels(exc.stage).inc()
            return  # propagates as it is: nobody is left to answer
        if isinstance(exc, Exception):
            raise ApiError(
                500, "inference_failed", "inference failed; nothing was charged"
            ) from None
        # BaseException (cancellation, shutdown) propagates unchanged.


class Meter:
    """Charges the caller's budget for one request (the last link of the dependency chain).

    Built either for a known key (``key_id``) or from the request's credentials (``account``:
    a blocking call that authenticates and rate-limits the key, run by :meth:`Charge.admit`
    in the same threadpool hop as the request's decoding and charge).
    """

    def __init__(
        self,
        *,
        key_id: str | None,
        store: Store,
        owner: str,
        request_id: str,
        metrics: Metrics,
        max_items: int,
        account: Callable[[], KeyRecord] | None = None,
    ) -> None:
        if key_id is None and account is None:
            raise ValueError("a meter needs a key id or an account to authenticate")
        self.key_id = key_id
        self._account = account
        #: The key's record as authenticated by ``account`` (None for a meter of a key id).
        self.key: KeyRecord | None = None
        self.store = store
        self.owner = owner
        self.request_id = request_id
        self.metrics = metrics
        self.max_items = max_items

    @property
    def account_id(self) -> str:
        """The key id the charges go to (after :meth:`authenticate`)."""
        if self.key_id is None:
            raise RuntimeError("the meter has not authenticated its key yet")
        return self.key_id

    def authenticate(self) -> None:
        """Authenticate and rate-limit the key once (blocking; no-op for a known key id)."""
        if self.key_id is None and self._account is not None:
            self.key = self._account()
            self.key_id = self.key.id

    def charge(
        self,
        endpoint: EmbeddingEndpoint,
        request: BaseModel,
        queries: int,
        idempotency_key: str | None,
        api: WireApi = "native",
    ) -> Charge:
        """The charge for ``request`` (``queries`` items), not taken yet.

        ``api`` is the wire format the request came in (see the module docstring).

        Raises:
            ApiError: 422 for an empty request or more items than one request may hold.
        """
        if queries == 0:
            raise ApiError(422, "empty_request", f"`{endpoint}` must contain at least one item")
        if queries > self.max_items:
            raise ApiError(
                422,
                "too_many_items",
                f"{queries} {endpoint} in one request; at most {self.max_items}",
            )
        # The idempotency fingerprint of the request; unchanged format for the native routes,
        # so a retry after a restart or an upgrade still matches its stored answer.
        parts: list[Any] = [endpoint, request.model_dump()]
        if api != "native":
            parts.insert(0, api)
            if idempotency_key is not None:
                idempotency_key = f"{api}:{idempotency_key}"
        body_sha256 = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
        return Charge(self, endpoint, queries, body_sha256, idempotency_key, api)
