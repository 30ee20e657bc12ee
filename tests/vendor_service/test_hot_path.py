"""The embedding routes' hot path: one threadpool hop authenticates, rate-limits, decodes and
charges a request (issue 14, item 2), and one more completes it. Every hop is counted where all
of them go (``anyio.to_thread.run_sync``, which Starlette's and FastAPI's ``run_in_threadpool``
call), on a real app and a real SQLite ledger."""

from __future__ import annotations

import functools

import anyio.to_thread
import pytest

from .conftest import image_b64


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions run in the threadpool, in order."""
    seen: list[str] = []
    real = anyio.to_thread.run_sync

    async def counting(func, *args, **kwargs):
        # run_in_threadpool hands anyio a functools.partial of the function it was given
        inner = func.func if isinstance(func, functools.partial) else func
        seen.append(getattr(inner, "__qualname__", repr(inner)).rsplit(".", 1)[-1])
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    return seen


def _post(api, path: str, body: dict, headers: dict, hops: list[str]) -> list[str]:
    hops.clear()
    r = api.client.post(path, json=body, headers=headers)
    assert r.status_code == 200, r.text
    return list(hops)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/embeddings/texts", {"texts": ["a", "b"]}),
        ("/v1/embeddings/images", {"images": [image_b64(), image_b64(fmt="JPEG")]}),
        ("/v1/embeddings", {"model": "vl2v-tiny", "input": ["a", "b"]}),
    ],
)
def test_a_request_takes_one_hop_before_inference_and_one_after(api, hops, path, body):
    _, h, key_id = api.new_key(100)
    _post(api, path, body, h, hops)  # the first request of a token also passes the body gate
    for headers in (h, {**h, "Idempotency-Key": "k1"}):
        assert _post(api, path, body, headers, hops) == ["_admit", "complete"]
    assert api.used(key_id) == 6


def test_refusals_still_cost_one_hop(api, hops):
    _, h, key_id = api.new_key(3)
    _post(api, "/v1/embeddings/texts", {"texts": ["a"]}, h, hops)  # past the body gate
    hops.clear()
    r = api.client.post("/v1/embeddings/texts", json={"texts": ["a", "b", "c"]}, headers=h)
    assert r.status_code == 402 and hops == ["_admit"]
    hops.clear()
    r = api.client.post("/v1/embeddings/images", json={"images": ["%%"]}, headers=h)
    assert r.status_code == 400 and hops == ["_admit"] and api.used(key_id) == 1
