"""The meter's protocol on a real SQLite ledger: charge on entry, complete, refund on anything else."""

from __future__ import annotations

import asyncio
import json

import pytest

from shared_schemas import TEXTS, EmbeddingResponse, QueryUsage, TextEmbeddingRequest
from vendor_service.errors import ApiError
from vendor_service.meter import Meter, Replayed
from vendor_service.metering import SQLiteStore
from vendor_service.metrics import Metrics


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "ledger.sqlite3")
    yield s
    s.close()


def _meter(store: SQLiteStore, key_id: str, request_id: str) -> Meter:
    return Meter(
        key_id=key_id,
        store=store,
        owner="inst_test",
        request_id=request_id,
        metrics=Metrics(),
        max_items=4,
    )


def _response(charge, request_id: str) -> EmbeddingResponse:
    return EmbeddingResponse(
        data=[],
        model="m",
        fingerprint="f",
        usage=QueryUsage(queries=charge.queries),
        budget=charge.budget,
        request_id=request_id,
    )


BODY = TextEmbeddingRequest(texts=["a", "b"])


def test_a_completed_charge_stays_charged_and_answers_with_headers(store):
    _, key = store.create_key("k", 10)

    async def go():
        charge = _meter(store, key.id, "r1").charge(TEXTS, BODY, 2, "idem-1")
        await charge.check_idempotency_key()
        async with charge:
            return await charge.complete(_response(charge, "r1"))

    resp = asyncio.run(go())
    assert resp.headers["x-queries-charged"] == "2" and resp.headers["x-budget-remaining"] == "8"
    assert store.get_key(key.id).used == 2
    assert json.loads(resp.body)["budget"] == {"limit": 10, "used": 2, "remaining": 8}


def test_cancellation_inside_the_charge_refunds_and_propagates(store):
    _, key = store.create_key("k", 10)
    entered = asyncio.Event()

    async def request():
        async with _meter(store, key.id, "r1").charge(TEXTS, BODY, 2, None):
            entered.set()
            await asyncio.sleep(60)  # inference that never finishes: the client went away

    async def go():
        task = asyncio.create_task(request())
        await entered.wait()
        assert store.get_key(key.id).used == 2  # charged before inference
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert store.get_key(key.id).used == 0
    assert [e.status for e in store.usage(key.id).entries] == ["refunded"]


def test_a_failure_is_refunded_as_a_500_and_leaving_without_complete_is_a_bug(store):
    _, key = store.create_key("k", 10)

    async def failing():
        async with _meter(store, key.id, "r1").charge(TEXTS, BODY, 2, None):
            raise ValueError("model exploded")

    async def forgetful():
        async with _meter(store, key.id, "r2").charge(TEXTS, BODY, 2, None):
            pass

    with pytest.raises(ApiError) as err:
        asyncio.run(failing())
    assert (err.value.status, err.value.code) == (500, "inference_failed")
    with pytest.raises(RuntimeError, match="without complete"):
        asyncio.run(forgetful())
    assert store.get_key(key.id).used == 0


def test_a_retry_that_finished_after_the_precheck_is_replayed_at_the_charge(store):
    _, key = store.create_key("k", 10)

    async def first():
        charge = _meter(store, key.id, "r1").charge(TEXTS, BODY, 2, "idem-1")
        async with charge:
            return await charge.complete(_response(charge, "r1"))

    async def retry():
        charge = _meter(store, key.id, "r2").charge(TEXTS, BODY, 2, "idem-1")
        await charge.check_idempotency_key()  # nothing stored yet
        await first()  # ... the first attempt finishes meanwhile
        async with charge:
            raise AssertionError("a replay must not run inference")

    with pytest.raises(Replayed) as replay:
        asyncio.run(retry())
    resp = replay.value.response
    assert (
        resp.headers["idempotent-replayed"] == "true" and resp.headers["x-queries-charged"] == "0"
    )
    assert json.loads(resp.body)["usage"] == {"queries": 0}
    assert store.get_key(key.id).used == 2  # charged once


@pytest.mark.parametrize(
    ("budget", "texts", "status", "code"),
    [
        (1, ["a", "b"], 402, "budget_exceeded"),
        (10, [], 422, "empty_request"),
        (10, ["a"] * 5, 422, "too_many_items"),
    ],
)
def test_refusals_charge_nothing(store, budget, texts, status, code):
    _, key = store.create_key("k", budget)

    async def go():
        body = TextEmbeddingRequest(texts=texts)
        async with _meter(store, key.id, "r1").charge(TEXTS, body, len(texts), None):
            raise AssertionError("refused requests never run")

    with pytest.raises(ApiError) as err:
        asyncio.run(go())
    assert (err.value.status, err.value.code) == (status, code)
    assert store.get_key(key.id).used == 0 and store.usage(key.id).entries == []


def test_a_key_revoked_after_authentication_is_refused_at_the_charge(store):
    _, key = store.create_key("k", 10)
    store.revoke(key.id)

    async def go():
        async with _meter(store, key.id, "r1").charge(TEXTS, BODY, 2, None):
            raise AssertionError("never runs")

    with pytest.raises(ApiError) as err:
        asyncio.run(go())
    assert (err.value.status, err.value.code) == (401, "invalid_key")
