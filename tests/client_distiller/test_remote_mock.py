"""RemoteTeacher against canned vendor answers (httpx.MockTransport): retries, keys, errors."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Callable

import httpx
import numpy as np
import pytest
from PIL import Image

from client_distiller.teacher import (
    AuthenticationError,
    BudgetExhausted,
    RateLimited,
    RemoteTeacher,
    VendorError,
)

DIM = 8
CARD = {
    "id": "mock", "pretrained": None, "trained": False, "fingerprint": "f" * 64,
    "embed_dim": DIM, "image_size": 16, "image_mean": [0.5] * 3, "image_std": [0.5] * 3,
    "context_length": 16, "logit_scale": 100.0, "price_per_image_query": 0.01,
    "price_per_text_query": 0.001, "max_items_per_request": 3, "max_request_bytes": 1 << 20,
}  # fmt: skip


def _embedding_response(n: int, offset: float = 0.0) -> dict:
    vecs = np.eye(DIM, dtype="<f4")[[i % DIM for i in range(n)]] + np.float32(offset)
    return {
        "data": [{"index": i, "embedding": base64.b64encode(v.tobytes()).decode()}
                 for i, v in enumerate(vecs)],
        "model": "mock", "fingerprint": "f" * 64, "usage": {"queries": n},
        "budget": {"limit": 100, "used": n, "remaining": 100 - n}, "request_id": "r1",
    }  # fmt: skip


class Vendor:
    """A scripted vendor: ``script`` gives the response for the k-th embedding request."""

    def __init__(self, script: Callable[[int, httpx.Request], httpx.Response]) -> None:
        self.script = script
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [CARD]})
        self.requests.append(request)
        return self.script(len(self.requests) - 1, request)

    def teacher(self, sleeps: list[float], **kw) -> RemoteTeacher:
        client = httpx.Client(
            transport=httpx.MockTransport(self),
            base_url="http://vendor",
            headers={"Authorization": "Bearer k"},
        )
        return RemoteTeacher(client=client, sleep=sleeps.append, concurrency=1, **kw)


def _n_items(request: httpx.Request) -> int:
    body = json.loads(request.content)
    return len(body.get("images") or body.get("texts"))


def test_429_with_retry_after_is_waited_out_with_the_same_key() -> None:
    def script(k: int, req: httpx.Request) -> httpx.Response:
        if k < 2:
            return httpx.Response(
                429,
                headers={"Retry-After": "7"},
                json={"error": {"code": "rate_limited", "message": "slow"}},
            )
        return httpx.Response(200, json=_embedding_response(_n_items(req)))

    vendor, sleeps = Vendor(script), []
    out = vendor.teacher(sleeps).embed_texts(["a", "b"])
    assert out.shape == (2, DIM)
    assert len(vendor.requests) == 3
    assert len(sleeps) == 2 and all(s >= 7 for s in sleeps)  # Retry-After honoured
    keys = {r.headers["Idempotency-Key"] for r in vendor.requests}
    assert len(keys) == 1  # the retried chunk carries the same key
    assert all(r.content == vendor.requests[0].content for r in vendor.requests)


def test_idempotency_key_depends_on_chunk_bytes_only() -> None:
    vendor, sleeps = (
        Vendor(lambda k, r: httpx.Response(200, json=_embedding_response(_n_items(r)))),
        [],
    )
    t = vendor.teacher(sleeps)
    t.embed_texts(["a", "b", "c", "d"])  # chunks of 3: [a b c] [d]
    t.embed_texts(["a", "b", "c"])
    keys = [r.headers["Idempotency-Key"] for r in vendor.requests]
    assert [_n_items(r) for r in vendor.requests] == [3, 1, 3]
    assert keys[0] == keys[2] and keys[0] != keys[1]


def test_401_raises_at_once() -> None:
    vendor, sleeps = (
        Vendor(
            lambda k, r: httpx.Response(
                401, json={"error": {"code": "invalid_key", "message": "unknown key"}}
            )
        ),
        [],
    )
    with pytest.raises(AuthenticationError, match="unknown key"):
        vendor.teacher(sleeps).embed_texts(["a"])
    assert len(vendor.requests) == 1 and sleeps == []


def test_402_raises_budget_exhausted_without_retry() -> None:
    vendor, sleeps = (
        Vendor(
            lambda k, r: httpx.Response(
                402,
                headers={"X-Budget-Remaining": "1"},
                json={"error": {"code": "budget_exceeded", "message": "needs 3; 1 remain"}},
            )
        ),
        [],
    )
    with pytest.raises(BudgetExhausted, match="1 remain") as info:
        vendor.teacher(sleeps).embed_texts(["a", "b", "c"])
    assert info.value.status_code == 402 and info.value.remaining == 1
    assert len(vendor.requests) == 1 and sleeps == []


def test_5xx_and_timeouts_are_retried_then_typed() -> None:
    def flaky(k: int, req: httpx.Request) -> httpx.Response:
        if k == 0:
            raise httpx.ReadTimeout("slow", request=req)
        if k == 1:
            return httpx.Response(503, text="overloaded")
        return httpx.Response(200, json=_embedding_response(_n_items(req)))

    vendor, sleeps = Vendor(flaky), []
    img = Image.new("RGB", (40, 30), (10, 200, 30))
    assert vendor.teacher(sleeps).embed_images([img]).shape == (1, DIM)
    assert len(vendor.requests) == 3 and len(sleeps) == 2
    sent = json.loads(vendor.requests[-1].content)["images"][0]
    assert Image.open(__import__("io").BytesIO(base64.b64decode(sent))).size == (16, 16)

    down, sleeps2 = Vendor(lambda k, r: httpx.Response(500, text="boom")), []
    with pytest.raises(VendorError, match="500"):
        down.teacher(sleeps2, max_retries=2).embed_texts(["a"])
    assert len(down.requests) == 3

    limited, sleeps3 = Vendor(lambda k, r: httpx.Response(429, headers={"Retry-After": "1"})), []
    with pytest.raises(RateLimited):
        limited.teacher(sleeps3, max_retries=1).embed_texts(["a"])
    assert len(limited.requests) == 2


def test_results_keep_order_across_concurrent_chunks() -> None:
    def script(k: int, req: httpx.Request) -> httpx.Response:
        texts = json.loads(req.content)["texts"]
        vecs = [np.full(DIM, float(t), dtype="<f4") for t in texts]
        body = _embedding_response(len(texts))
        body["data"] = [
            {"index": i, "embedding": base64.b64encode(v.tobytes()).decode()}
            for i, v in enumerate(vecs)
        ]
        return httpx.Response(200, json=body)

    vendor = Vendor(script)
    client = httpx.Client(transport=httpx.MockTransport(vendor), base_url="http://vendor")
    t = RemoteTeacher(client=client, concurrency=4)
    out = t.embed_texts([str(i) for i in range(10)])
    assert np.array_equal(out[:, 0], np.arange(10, dtype=np.float32))
    assert sorted(_n_items(r) for r in vendor.requests) == [1, 3, 3, 3]


def test_after_a_402_the_rest_of_the_budget_is_spent_without_paying_twice(tmp_path) -> None:
    """Requests #2 and #4 are refused with stale (too high) remaining budgets, as happens when
    concurrent requests are charged in between; what is left is then bought exactly, and no
    item is ever charged twice."""
    from client_distiller.teacher import BudgetLedger, CachedTeacher, QueryCache

    state = {"remaining": 20, "charged": Counter()}
    stale = {2: 6, 4: 2}

    def script(k: int, req: httpx.Request) -> httpx.Response:
        texts = json.loads(req.content)["texts"]
        if k in stale or len(texts) > state["remaining"]:
            rem = stale.get(k, state["remaining"])
            return httpx.Response(
                402,
                headers={"X-Budget-Remaining": str(rem)},
                json={"error": {"code": "budget_exceeded", "message": "no"}},
            )
        state["remaining"] -= len(texts)
        state["charged"].update(texts)
        body = _embedding_response(len(texts))
        body["budget"]["remaining"] = state["remaining"]
        return httpx.Response(200, json=body)

    card = {**CARD, "max_items_per_request": 4}
    vendor = Vendor(script)
    vendor_card = lambda req: httpx.Response(200, json={"data": [card]})
    transport = httpx.MockTransport(
        lambda r: vendor_card(r) if r.url.path == "/v1/models" else vendor(r)
    )
    client = httpx.Client(transport=transport, base_url="http://vendor")
    remote = RemoteTeacher(client=client, concurrency=1, sleep=lambda s: None)
    cache = QueryCache(tmp_path)
    teacher = CachedTeacher(remote, cache, BudgetLedger(tmp_path))
    texts = [f"t{i}" for i in range(20)]
    with pytest.raises(BudgetExhausted):
        teacher.embed_texts(texts)
    assert state["remaining"] == 0
    assert sorted(state["charged"]) == sorted(texts) and max(state["charged"].values()) == 1
    assert teacher.sent == 20 and len(cache) == 20
    assert teacher.embed_texts(texts).shape == (20, DIM)  # all from the cache now
    assert len(vendor.requests) == 8  # 4 + 4, refused, 4, refused, 2, 4 + 2
    teacher.close()
