"""In-process tests of every endpoint and error path (TestClient runs the lifespan)."""

from __future__ import annotations

import base64
import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from model_io import state_dict_fingerprint as fingerprint_state_dict
from shared_schemas import EmbeddingResponse, ModelListResponse, UsageResponse, decode_embedding

from .conftest import ADMIN, image_b64

ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}


def assert_error(resp, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert body["error"]["request_id"] == resp.headers["x-request-id"]
    assert "Traceback" not in resp.text
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


# -- model card, health ----------------------------------------------------------------------


def test_model_card_describes_tiny_untrained_model(api, tiny_model):
    r = api.client.get("/v1/models")
    assert r.status_code == 200
    card = ModelListResponse.model_validate(r.json()).data[0]
    assert card.id == "vl2v-tiny" and card.trained is False and card.pretrained is None
    assert card.fingerprint == fingerprint_state_dict(tiny_model.model)
    assert len(card.fingerprint) == 64
    assert (card.embed_dim, card.image_size, card.context_length) == (32, 32, 16)
    assert card.logit_scale == pytest.approx(float(tiny_model.model.logit_scale.exp()))
    assert card.max_items_per_request == 64


def test_fingerprint_changes_with_weights(tiny_model):
    import copy

    import torch

    other = copy.deepcopy(tiny_model.model)
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    assert fingerprint_state_dict(other) != fingerprint_state_dict(tiny_model.model)
    assert fingerprint_state_dict(tiny_model.model) == tiny_model.fingerprint


def test_health_ready_metrics_docs(api):
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model"] == "vl2v-tiny"
    assert api.client.get("/docs").status_code == 200
    paths = api.client.get("/openapi.json").json()["paths"]
    assert "/v1/embeddings/images" in paths and "/v1/admin/keys/{key_id}/topup" in paths
    _, h, _ = api.new_key(10)
    assert api.client.post("/v1/embeddings/texts", json={"texts": ["a", "b"]}, headers=h).is_success
    metrics = api.client.get("/metrics").text
    assert 'vendor_queries_charged_total{endpoint="texts"} 2.0' in metrics
    assert 'route="/v1/embeddings/texts",status="200"' in metrics
    assert "vendor_batch_size_bucket" in metrics and "vendor_inference_queue_depth" in metrics
    assert "vendor_request_latency_seconds_bucket" in metrics


# -- embeddings ------------------------------------------------------------------------------


def test_image_embeddings_float_and_base64_agree_and_are_charged(api):
    _, h, key_id = api.new_key(10)
    images = [image_b64(), image_b64(fmt="JPEG", color=(10, 200, 30))]
    r = api.client.post("/v1/embeddings/images", json={"images": images}, headers=h)
    assert r.status_code == 200, r.text
    body = EmbeddingResponse.model_validate(r.json())
    assert r.headers["x-queries-charged"] == "2" and r.headers["x-budget-remaining"] == "8"
    assert body.usage.queries == 2 and body.budget.remaining == 8
    assert body.request_id == r.headers["x-request-id"]
    vecs = np.stack([decode_embedding(d.embedding) for d in body.data])  # [2, 32]
    assert vecs.shape == (2, 32)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vecs[0], vecs[1])

    r64 = api.client.post(
        "/v1/embeddings/images",
        json={"images": images, "encoding_format": "base64"},
        headers=h,
    )
    first = r64.json()["data"][0]["embedding"]
    assert isinstance(first, str) and len(base64.b64decode(first)) == 32 * 4
    vecs64 = np.stack([decode_embedding(d["embedding"]) for d in r64.json()["data"]])
    np.testing.assert_allclose(vecs64, vecs, atol=1e-6)
    assert api.used(key_id) == 4


def test_text_embeddings_normalize_flag(api, tiny_model):
    _, h, _ = api.new_key(10)
    raw = api.client.post(
        "/v1/embeddings/texts", json={"texts": ["a red boat"], "normalize": False}, headers=h
    )
    vec = decode_embedding(raw.json()["data"][0]["embedding"])
    import torch

    with torch.inference_mode():
        direct = tiny_model.model.encode_text(tiny_model.tokenizer(["a red boat"]))[0].numpy()
    np.testing.assert_allclose(vec, direct, rtol=1e-4, atol=1e-5)
    normed = api.client.post("/v1/embeddings/texts", json={"texts": ["a red boat"]}, headers=h)
    np.testing.assert_allclose(
        decode_embedding(normed.json()["data"][0]["embedding"]),
        direct / np.linalg.norm(direct),
        atol=1e-5,
    )


def test_budget_exceeded_is_refused_whole_with_402(api):
    _, h, key_id = api.new_key(3)
    assert api.client.post("/v1/embeddings/texts", json={"texts": ["a", "b"]}, headers=h).is_success
    r = api.client.post("/v1/embeddings/texts", json={"texts": ["a", "b"]}, headers=h)
    assert_error(r, 402, "budget_exceeded")
    assert r.headers["x-queries-charged"] == "0" and r.headers["x-budget-remaining"] == "1"
    assert api.used(key_id) == 2
    assert api.client.post("/v1/embeddings/texts", json={"texts": ["c"]}, headers=h).is_success
    assert api.used(key_id) == 3


def _truncated_png() -> str:
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buf, "PNG")
    return base64.b64encode(buf.getvalue()[: len(buf.getvalue()) // 2]).decode()


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"images": ["not base64 !!"]}, 400, "invalid_base64"),
        ({"images": [base64.b64encode(b"hello, not an image").decode()]}, 400, "invalid_image"),
        ({"images": [""]}, 400, "invalid_image"),
        ({"images": ["TRUNCATED"]}, 400, "invalid_image"),
        ({"images": ["GIF"]}, 400, "unsupported_image"),
        ({"images": ["BOMB"]}, 413, "image_too_large"),
        ({"images": []}, 422, "empty_request"),
        ({"images": ["SMALL"] * 65}, 422, "too_many_items"),
        ({"images": "x"}, 422, "invalid_request"),
        ({"images": ["SMALL"], "extra": 1}, 422, "invalid_request"),
        ({"images": ["SMALL"], "encoding_format": "int8"}, 422, "invalid_request"),
    ],
)
def test_invalid_images_are_refused_and_not_charged(api, payload, status, code):
    _, h, key_id = api.new_key(1000)
    subst = {
        "TRUNCATED": _truncated_png(),
        "GIF": image_b64(fmt="GIF"),
        # 5000x5000 1-bit PNG: a few kB on the wire, 25 Mpx (> default 16.7 Mpx) decoded
        "BOMB": image_b64(size=(5000, 5000), mode="1", color=0),
        "SMALL": image_b64(),
    }
    if isinstance(payload["images"], list):
        payload = {**payload, "images": [subst.get(x, x) for x in payload["images"]]}
    # one good image first, so a per-item failure must refuse the whole request
    if status in (400, 413):
        payload["images"] = [image_b64()] + payload["images"]
    r = api.client.post("/v1/embeddings/images", json=payload, headers=h)
    assert_error(r, status, code)
    assert api.used(key_id) == 0
    assert api.client.get("/v1/usage", headers=h).json()["entries"] == []


def test_pillow_decompression_bomb_error_is_refused(make_api, monkeypatch):
    # Our own pixel cap above Pillow's: Pillow's DecompressionBombError path must still 413.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with make_api(limits={"max_image_pixels": 10**9}) as api:
        _, h, key_id = api.new_key(10)
        r = api.client.post(
            "/v1/embeddings/images", json={"images": [image_b64(size=(40, 30))]}, headers=h
        )
        assert_error(r, 413, "image_too_large")
        assert api.used(key_id) == 0


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"texts": []}, "empty_request"),
        ({"texts": ["x" * 2001]}, "text_too_long"),
        ({"texts": ["a"] * 65}, "too_many_items"),
        ({"texts": [1, 2]}, "invalid_request"),
        ({}, "invalid_request"),
    ],
)
def test_invalid_texts_are_refused_and_not_charged(api, payload, code):
    _, h, key_id = api.new_key(1000)
    assert_error(api.client.post("/v1/embeddings/texts", json=payload, headers=h), 422, code)
    assert api.used(key_id) == 0


def test_non_json_body_is_422(api):
    _, h, _ = api.new_key(10)
    r = api.client.post(
        "/v1/embeddings/texts",
        content=b"{not json",
        headers={**h, "content-type": "application/json"},
    )
    assert_error(r, 422, "invalid_request")


def test_body_over_limit_is_413_by_length_and_by_stream(make_api):
    with make_api(limits={"max_request_bytes": 2000}) as api:
        _, h, key_id = api.new_key(100)
        big = {"texts": ["x" * 500] * 5}
        assert_error(api.client.post("/v1/embeddings/texts", json=big, headers=h), 413)

        def chunks():  # no Content-Length: the middleware must count streamed bytes
            yield b'{"texts": ["'
            for _ in range(10):
                yield b"y" * 300
            yield b'"]}'

        r = api.client.post(
            "/v1/embeddings/texts",
            content=chunks(),
            headers={**h, "content-type": "application/json"},
        )
        assert "content-length" not in r.request.headers
        assert_error(r, 413, "request_too_large")
        assert api.used(key_id) == 0
        assert api.client.post("/v1/embeddings/texts", json={"texts": ["ok"]}, headers=h).is_success


# -- authentication, rate limit ----------------------------------------------------------------


def test_missing_wrong_and_revoked_keys_get_401(api):
    body = {"texts": ["a"]}
    assert_error(api.client.post("/v1/embeddings/texts", json=body), 401)
    assert_error(
        api.client.post("/v1/embeddings/texts", json=body, headers={"Authorization": "Basic x"}),
        401,
    )
    bad = {"Authorization": "Bearer vk_wrong"}
    assert_error(
        api.client.post("/v1/embeddings/texts", json=body, headers=bad), 401, "invalid_key"
    )
    assert_error(api.client.get("/v1/usage", headers=bad), 401)
    _, h, key_id = api.new_key(10)
    assert api.client.post("/v1/embeddings/texts", json=body, headers=h).is_success
    assert api.client.post(f"/v1/admin/keys/{key_id}/revoke", headers=ADMIN_H).json()["revoked"]
    assert_error(api.client.post("/v1/embeddings/texts", json=body, headers=h), 401, "invalid_key")


def test_keys_are_stored_hashed(api):
    import sqlite3

    key, _, key_id = api.new_key(10)
    raw = api.store.path.read_bytes()
    db = sqlite3.connect(api.store.path)
    rows = db.execute("SELECT * FROM keys").fetchall()
    db.close()
    assert key.encode() not in raw and all(key not in map(str, row) for row in rows)
    assert api.store.authenticate(key).id == key_id


def test_rate_limit_429_with_retry_after(api):
    _, h, key_id = api.new_key(100, rate_limit_rps=0.01, rate_limit_burst=2)
    ok = [
        api.client.post("/v1/embeddings/texts", json={"texts": ["a"]}, headers=h) for _ in range(2)
    ]
    assert all(r.is_success for r in ok)
    r = api.client.post("/v1/embeddings/texts", json={"texts": ["a"]}, headers=h)
    assert_error(r, 429, "rate_limited")
    retry = int(r.headers["retry-after"])
    assert retry >= 1 and retry <= 100
    assert api.used(key_id) == 2
    # another key is not affected
    _, h2, _ = api.new_key(100)
    assert api.client.post("/v1/embeddings/texts", json={"texts": ["a"]}, headers=h2).is_success


def test_token_bucket_refills():
    from vendor_service.ratelimit import TokenBuckets, retry_after_header

    b = TokenBuckets()
    assert [b.take("k", 2.0, 2, now=0.0) for _ in range(2)] == [0.0, 0.0]
    wait = b.take("k", 2.0, 2, now=0.0)
    assert wait == pytest.approx(0.5)
    assert b.take("k", 2.0, 2, now=0.6) == 0.0
    assert retry_after_header(0.01) == "1" and retry_after_header(2.2) == "3"
    assert retry_after_header(float("inf")) == "86400" == retry_after_header(1e300)


# -- idempotency -------------------------------------------------------------------------------


def test_idempotent_retry_is_replayed_free(api):
    _, h, key_id = api.new_key(10)
    hk = {**h, "Idempotency-Key": "chunk-1"}
    body = {"texts": ["a", "b", "c"]}
    first = api.client.post("/v1/embeddings/texts", json=body, headers=hk)
    assert first.headers["x-queries-charged"] == "3"
    again = api.client.post("/v1/embeddings/texts", json=body, headers=hk)
    assert again.status_code == 200
    assert again.headers["x-queries-charged"] == "0" and again.headers["x-budget-remaining"] == "7"
    assert again.json()["usage"] == {"queries": 0}
    assert again.json()["data"] == first.json()["data"]
    assert api.used(key_id) == 3
    other = api.client.post("/v1/embeddings/texts", json={"texts": ["z"]}, headers=hk)
    assert_error(other, 422, "idempotency_key_reused")
    # same texts with another option is a different body too
    opt = api.client.post("/v1/embeddings/texts", json={**body, "normalize": False}, headers=hk)
    assert_error(opt, 422, "idempotency_key_reused")
    assert api.used(key_id) == 3
    entries = api.client.get("/v1/usage", headers=h).json()["entries"]
    assert [e["idempotency_key"] for e in entries] == ["chunk-1"]


def test_idempotency_in_flight_is_409(api):
    _, h, key_id = api.new_key(10)
    body = {"texts": ["a"]}
    import hashlib
    import json

    sha = hashlib.sha256(
        json.dumps(
            ["texts", {"normalize": True, "encoding_format": "float", "texts": ["a"]}],
            sort_keys=True,
        ).encode()
    ).hexdigest()
    # The first request is still in flight (charged, no response stored yet).
    api.store.charge(
        key_id,
        1,
        request_id="req_first",
        endpoint="texts",
        owner=api.app.state.instance_id,
        idem_key="k1",
        body_sha256=sha,
    )
    r = api.client.post("/v1/embeddings/texts", json=body, headers={**h, "Idempotency-Key": "k1"})
    assert_error(r, 409, "idempotency_in_flight")
    assert r.headers["retry-after"] == "1"
    assert api.used(key_id) == 1


def test_idempotency_keys_are_per_api_key(api):
    _, h1, id1 = api.new_key(10)
    _, h2, id2 = api.new_key(10)
    body = {"texts": ["a"]}
    api.client.post("/v1/embeddings/texts", json=body, headers={**h1, "Idempotency-Key": "same"})
    r = api.client.post(
        "/v1/embeddings/texts", json=body, headers={**h2, "Idempotency-Key": "same"}
    )
    assert r.headers["x-queries-charged"] == "1"
    assert (api.used(id1), api.used(id2)) == (1, 1)


def test_inference_failure_is_refunded(make_api, tiny_model):
    import copy

    broken_model = copy.deepcopy(tiny_model.model)

    def fail(*_a, **_k):
        raise RuntimeError("GPU on fire")

    broken_model.encode_text = fail
    with make_api(model=dataclasses.replace(tiny_model, model=broken_model)) as api:
        _, h, key_id = api.new_key(10)
        r = api.client.post(
            "/v1/embeddings/texts",
            json={"texts": ["a", "b"]},
            headers={**h, "Idempotency-Key": "x"},
        )
        err = assert_error(r, 500, "inference_failed")
        assert "GPU on fire" not in err["message"]
        assert api.used(key_id) == 0
        usage = UsageResponse.model_validate(api.client.get("/v1/usage", headers=h).json())
        assert [(e.status, e.queries) for e in usage.entries] == [("refunded", 2)]
        assert usage.requests == 0 and usage.queries_by_endpoint == {}
        # the idempotency key was released: the retry runs (and fails) again, not 409
        r2 = api.client.post(
            "/v1/embeddings/texts",
            json={"texts": ["a", "b"]},
            headers={**h, "Idempotency-Key": "x"},
        )
        assert_error(r2, 500, "inference_failed")


def test_stale_in_flight_charges_are_refunded_at_recovery(api):
    _, _, key_id = api.new_key(10)
    store = api.store
    store.charge(
        key_id,
        4,
        request_id="req_dead",
        endpoint="images",
        owner="inst_dead",
        idem_key="k",
        body_sha256="s",
    )
    store.charge(key_id, 2, request_id="req_live", endpoint="texts", owner="inst_live")
    assert store.get_key(key_id).used == 6
    assert store.recover_stale("inst_live") == 1
    assert store.get_key(key_id).used == 2
    assert store.recover_stale("inst_live") == 0  # never refunds twice
    assert store.lookup_idempotent(key_id, "k", "s") is None  # key freed for the retry


# -- usage and admin -----------------------------------------------------------------------------


def test_usage_pages_through_the_ledger(api):
    _, h, _ = api.new_key(100)
    for n in (1, 2, 3):
        api.client.post("/v1/embeddings/texts", json={"texts": ["t"] * n}, headers=h)
    api.client.post("/v1/embeddings/images", json={"images": [image_b64()]}, headers=h)
    page1 = UsageResponse.model_validate(api.client.get("/v1/usage?limit=3", headers=h).json())
    assert page1.budget.used == 7 and page1.requests == 4
    assert page1.queries_by_endpoint == {"texts": 6, "images": 1}
    assert [e.queries for e in page1.entries] == [1, 3, 2]  # newest first
    assert page1.next_cursor is not None
    page2 = api.client.get(f"/v1/usage?limit=3&cursor={page1.next_cursor}", headers=h).json()
    assert [e["queries"] for e in page2["entries"]] == [1] and page2["next_cursor"] is None
    assert_error(api.client.get("/v1/usage?cursor=abc", headers=h), 422)
    assert_error(api.client.get("/v1/usage?limit=0", headers=h), 422)


def test_admin_key_lifecycle(api):
    r = api.client.post("/v1/admin/keys", json={"name": "alice", "budget": 5}, headers=ADMIN_H)
    assert r.status_code == 201
    key, info = r.json()["key"], r.json()["info"]
    assert key.startswith("vk_") and info["prefix"] == key[:10]
    listed = api.client.get("/v1/admin/keys", headers=ADMIN_H).json()["data"]
    assert [k["id"] for k in listed] == [info["id"]] and key not in str(listed)
    up = api.client.post(f"/v1/admin/keys/{info['id']}/topup", json={"queries": 7}, headers=ADMIN_H)
    assert up.json()["budget"] == {"limit": 12, "used": 0, "remaining": 12}
    h = {"Authorization": f"Bearer {key}"}
    api.client.post("/v1/embeddings/texts", json={"texts": ["a"]}, headers=h)
    usage = api.client.get(f"/v1/admin/keys/{info['id']}/usage", headers=ADMIN_H).json()
    assert usage["budget"]["used"] == 1 and usage["name"] == "alice"
    gone = api.client.delete(f"/v1/admin/keys/{info['id']}", headers=ADMIN_H)
    assert gone.json()["revoked"] is True
    assert_error(api.client.post("/v1/embeddings/texts", json={"texts": ["a"]}, headers=h), 401)
    for method, path in [
        ("post", "/v1/admin/keys/key_nope/topup"),
        ("post", "/v1/admin/keys/key_nope/revoke"),
        ("get", "/v1/admin/keys/key_nope/usage"),
    ]:
        kwargs = {"json": {"queries": 1}} if path.endswith("topup") else {}
        assert_error(getattr(api.client, method)(path, headers=ADMIN_H, **kwargs), 404)
    for bad in (
        {"name": "", "budget": -1},
        {"name": "x", "budget": True},  # found by schemathesis: bool must not pass as 1
        {"name": "x", "budget": 5, "rate_limit_burst": True},
    ):
        assert_error(api.client.post("/v1/admin/keys", json=bad, headers=ADMIN_H), 422)


def test_admin_routes_need_the_admin_token(api):
    _, h, key_id = api.new_key(10)
    assert_error(api.client.get("/v1/admin/keys", headers=h), 403, "forbidden")
    assert_error(
        api.client.post(f"/v1/admin/keys/{key_id}/topup", json={"queries": 5}, headers=h), 403
    )
    assert_error(api.client.get("/v1/admin/keys"), 401)
    assert_error(api.client.get("/v1/admin/keys", headers={"Authorization": "Bearer nope"}), 401)
    assert api.store.get_key(key_id).limit == 10


def test_unknown_route_and_method_use_the_error_shape(api):
    assert_error(api.client.get("/v1/nope"), 404, "not_found")
    assert_error(api.client.get("/v1/embeddings/texts"), 405, "method_not_allowed")


def test_checkpoint_path_loads_through_open_clip_pretrained(tmp_path, tiny_model):
    import torch

    from vendor_service.inference.loading import ModelUnavailable, load_model
    from vendor_service.settings import ModelSettings

    ckpt = tmp_path / "tiny_weights.pt"
    torch.save(tiny_model.model.state_dict(), ckpt)
    loaded = load_model(ModelSettings(name="vl2v-tiny", pretrained=str(ckpt)))
    assert loaded.trained is True and loaded.pretrained == "tiny_weights.pt"  # no local path
    assert loaded.fingerprint == tiny_model.fingerprint  # same weights, same fingerprint
    with pytest.raises(ModelUnavailable):
        load_model(ModelSettings(name="vl2v-tiny", pretrained=str(tmp_path / "missing.pt")))
    with pytest.raises(ModelUnavailable, match="unknown open_clip architecture"):
        load_model(ModelSettings(name="no-such-arch"))
