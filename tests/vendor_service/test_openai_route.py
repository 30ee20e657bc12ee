"""In-process checks of ``POST /v1/embeddings`` that need no SDK: its OpenAPI entry, its body
limits and gate, and that it is the native charge path (same ledger, same replay rules).
The SDK's view against a real server: ``test_openai.py``."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from .conftest import ADMIN


def test_openapi_documents_the_route_with_its_request_and_response(api):
    spec = api.client.get("/openapi.json").json()
    op = spec["paths"]["/v1/embeddings"]["post"]
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/OpenAIEmbeddingRequest")
    request = spec["components"]["schemas"]["OpenAIEmbeddingRequest"]
    assert set(request["properties"]) == {
        "model", "input", "encoding_format", "dimensions", "user", "modality",
    }  # fmt: skip
    assert request["required"] == ["model", "input"]
    assert request["additionalProperties"] is False
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ok.endswith("/OpenAIEmbeddingResponse")
    assert {"400", "401", "402", "404", "409", "413", "422", "429"} <= set(op["responses"])
    params = {p["name"] for p in op.get("parameters", [])}
    assert "Idempotency-Key" in params


def test_the_route_takes_bodies_up_to_the_embedding_limit(make_api):
    # 64 KiB is the cap of control routes; images through this route may be as large as
    # limits.max_request_bytes, as natively.
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)).save(buf, "PNG")
    noisy = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    assert len(noisy) > 64 * 1024
    with make_api(limits={"max_request_bytes": 400_000}) as api:
        _, h, key_id = api.new_key(10)
        body = {"model": "vl2v-tiny", "input": [noisy], "modality": "image"}
        r = api.client.post("/v1/embeddings", json=body, headers=h)
        assert r.status_code == 200, r.text
        r = api.client.post("/v1/embeddings", json={**body, "input": [noisy] * 6}, headers=h)
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        assert api.used(key_id) == 1


def test_an_unauthenticated_body_is_refused_before_it_is_read(api):
    r = api.client.post("/v1/embeddings", json={"model": "vl2v-tiny", "input": "a"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = api.client.post(
        "/v1/embeddings",
        json={"model": "vl2v-tiny", "input": "a"},
        headers={"Authorization": "Bearer vk_nope"},
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_key"


def test_both_apis_charge_the_same_ledger_and_budget(api):
    _, h, key_id = api.new_key(5)
    assert api.client.post("/v1/embeddings/texts", json={"texts": ["a", "b"]}, headers=h).is_success
    body = {"model": "vl2v-tiny", "input": ["a", "b", "c"]}
    r = api.client.post("/v1/embeddings", json=body, headers=h)
    assert r.status_code == 200 and r.json()["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert r.headers["x-queries-charged"] == "3" and r.headers["x-budget-remaining"] == "0"
    r = api.client.post("/v1/embeddings", json={**body, "input": "d"}, headers=h)
    assert r.status_code == 402 and r.json()["error"]["code"] == "budget_exceeded"
    usage = api.client.get(
        f"/v1/admin/keys/{key_id}/usage", headers={"Authorization": f"Bearer {ADMIN}"}
    ).json()
    assert usage["budget"]["used"] == 5 and usage["queries_by_endpoint"] == {"texts": 5}
    assert [e["queries"] for e in usage["entries"]] == [3, 2]  # newest first
    metrics = api.client.get("/metrics").text
    assert 'vendor_queries_charged_total{endpoint="texts"} 5.0' in metrics
    assert 'route="/v1/embeddings",status="200"' in metrics


def test_a_replay_answers_in_the_openai_format(api):
    _, h, _ = api.new_key(5)
    hk = {**h, "Idempotency-Key": "k"}
    body = {"model": "vl2v-tiny", "input": ["a"], "encoding_format": "base64"}
    first = api.client.post("/v1/embeddings", json=body, headers=hk).json()
    again = api.client.post("/v1/embeddings", json=body, headers=hk)
    assert again.headers["idempotent-replayed"] == "true"
    replayed = again.json()
    assert replayed["usage"] == {"prompt_tokens": 0, "total_tokens": 0}
    assert set(replayed) == {"object", "data", "model", "usage"}  # no native fields mixed in
    assert replayed["data"] == first["data"]
