"""In-process tests of the vendor's limits: cheap checks before work, bounded decoding and
tokenizing, throttled failures and usage, the optional /metrics token, Allow and HEAD, and the
access log's redaction. (The connection-level limits need a real server:
``tests/reliability/test_slow_clients.py``.)"""

from __future__ import annotations

import base64
import io
import logging
import random
import string
import time

import pytest
from PIL import Image

from .conftest import ADMIN, image_b64

ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}


def _error(resp, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()["error"]
    assert body["request_id"] == resp.headers["x-request-id"]
    if code is not None:
        assert body["code"] == code, body
    return body


def _strip(w: int, h: int) -> str:
    """A real 1-bit PNG of w x h (a few KB on the wire for a million pixels)."""
    buf = io.BytesIO()
    Image.new("1", (w, h), 0).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _random_texts(n: int, chars: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(string.ascii_letters) for _ in range(chars)) for _ in range(n)]


# -- free work before the charge -------------------------------------------------------------


def test_a_key_without_budget_gets_402_before_its_inputs_are_decoded(api, tiny_model):
    _, h, key_id = api.new_key(0)
    cache = tiny_model.tokenizer.cache
    words_before = len(cache)
    started = time.perf_counter()
    # 1 x 1,000,000: 1 Mpx passes the pixel cap; resized it would be 32 x 32,000,000.
    r = api.client.post("/v1/embeddings/images", json={"images": [_strip(1, 1_000_000)]}, headers=h)
    _error(r, 402, "budget_exceeded")
    texts = _random_texts(64, 2000)  # 0.3 s of BPE each when tokenized
    r = api.client.post("/v1/embeddings/texts", json={"texts": texts}, headers=h)
    _error(r, 402, "budget_exceeded")
    assert time.perf_counter() - started < 5.0  # before: minutes (see the reliability table)
    assert len(cache) == words_before  # nothing was tokenized
    assert r.headers["x-budget-remaining"] == "0" and api.used(key_id) == 0


def test_a_top_up_is_seen_by_the_budget_check_at_once(api):
    _, h, key_id = api.new_key(1)
    body = {"texts": ["a", "b"]}
    _error(api.client.post("/v1/embeddings/texts", json=body, headers=h), 402)
    r = api.client.post(f"/v1/admin/keys/{key_id}/topup", json={"queries": 1}, headers=ADMIN_H)
    assert r.status_code == 200
    assert api.client.post("/v1/embeddings/texts", json=body, headers=h).status_code == 200
    assert api.used(key_id) == 2


def test_a_replay_is_free_even_when_the_budget_is_spent(api):
    _, h, key_id = api.new_key(2)
    hk = {**h, "Idempotency-Key": "k"}
    body = {"texts": ["a", "b"]}
    first = api.client.post("/v1/embeddings/texts", json=body, headers=hk)
    again = api.client.post("/v1/embeddings/texts", json=body, headers=hk)
    assert again.status_code == 200 and again.json()["data"] == first.json()["data"]
    assert again.headers["x-queries-charged"] == "0" and api.used(key_id) == 2


@pytest.mark.parametrize(("w", "h"), [(1, 1_000_000), (1_000_000, 1), (90, 10), (10, 90)])
def test_extreme_aspect_ratios_are_refused_from_the_header(api, w, h):
    _, headers, key_id = api.new_key(100)
    started = time.perf_counter()
    r = api.client.post("/v1/embeddings/images", json={"images": [_strip(w, h)]}, headers=headers)
    err = _error(r, 413, "image_too_large")
    assert "aspect ratio" in err["message"] and time.perf_counter() - started < 5.0
    assert api.used(key_id) == 0


def test_aspect_ratios_within_the_limit_are_embedded(make_api):
    with make_api(limits={"max_aspect_ratio": 4.0}) as api:
        _, h, key_id = api.new_key(10)
        images = [image_b64(size=(40, 10)), image_b64(size=(10, 40)), image_b64(size=(30, 30))]
        r = api.client.post("/v1/embeddings/images", json={"images": images}, headers=h)
        assert r.status_code == 200, r.text
        r = api.client.post(
            "/v1/embeddings/images", json={"images": [image_b64(size=(41, 10))]}, headers=h
        )
        _error(r, 413, "image_too_large")
        assert api.used(key_id) == 3


def test_the_tokenizer_cache_is_bounded_and_tokens_are_unchanged(tiny_model):
    import open_clip

    from vendor_service.inference.loading import BoundedCache, bound_tokenizer_cache

    assert isinstance(tiny_model.tokenizer.cache, BoundedCache)  # as loaded for serving
    bounded, unbounded = (open_clip.get_tokenizer(tiny_model.name) for _ in range(2))
    special = dict(unbounded.cache)
    bound_tokenizer_cache(bounded, limit=50)
    bound_tokenizer_cache(bounded, limit=10**6)  # already bounded: kept as it is
    assert isinstance(bounded.cache, BoundedCache) and bounded.cache.limit == 50
    words = _random_texts(600, 6, seed=1)
    texts = [" ".join(words[i : i + 6]) for i in range(0, len(words), 6)]
    texts.append("<start_of_text> a photo of a red boat <end_of_text>")
    assert (bounded(texts) == unbounded(texts)).all()
    assert len(bounded.cache) <= 50 + len(special) and len(unbounded.cache) > 500
    assert all(bounded.cache[k] == v for k, v in special.items())  # never forgotten


# -- throttles -------------------------------------------------------------------------------


def test_failed_authentication_is_throttled_per_address(make_api):
    with make_api(rate_limit={"failed_auth_rps": 0.01, "failed_auth_burst": 5}) as api:
        _, good, _ = api.new_key(100)
        assert api.client.post(
            "/v1/embeddings/texts", json={"texts": ["a"]}, headers=good
        ).is_success
        lookups = []
        real = api.store.authenticate

        def counting(token):
            lookups.append(token)
            return real(token)

        api.store.authenticate = counting
        statuses = []
        for i in range(20):
            bad = {"Authorization": f"Bearer vk_wrong{i}"}
            r = api.client.post("/v1/embeddings/texts", json={"texts": ["a"]}, headers=bad)
            statuses.append(r.status_code)
        assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
        assert int(r.headers["retry-after"]) >= 1
        assert len(lookups) == 6  # once throttled, unknown tokens are not even looked up
        # wrong admin tokens and usage reads with wrong keys are the same failures
        _error(api.client.get("/v1/admin/keys", headers={"Authorization": "Bearer x"}), 429)
        _error(api.client.get("/v1/usage", headers={"Authorization": "Bearer x"}), 429)
        # a key this worker has just seen keeps working from the same address
        assert api.client.post(
            "/v1/embeddings/texts", json={"texts": ["b"]}, headers=good
        ).is_success
        metrics = api.client.get("/metrics").text
        assert 'vendor_throttled_total{reason="failed_auth"}' in metrics


def test_usage_reads_are_throttled_per_key_apart_from_embeddings(make_api):
    with make_api(rate_limit={"usage_rps": 0.01, "usage_burst": 3}) as api:
        _, h, _ = api.new_key(100, rate_limit_rps=0.01, rate_limit_burst=1)
        assert api.client.post("/v1/embeddings/texts", json={"texts": ["a"]}, headers=h).is_success
        statuses = [api.client.get("/v1/usage", headers=h).status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        r = api.client.get("/v1/usage", headers=h)
        _error(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1
        _, h2, _ = api.new_key(100)
        assert api.client.get("/v1/usage", headers=h2).status_code == 200  # per key


def test_metrics_can_require_a_token(make_api):
    with make_api(metrics_token="scrape-secret") as api:
        _error(api.client.get("/metrics"), 401, "unauthorized")
        _error(api.client.get("/metrics", headers={"Authorization": "Bearer nope"}), 401)
        r = api.client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
        assert r.status_code == 200 and "vendor_requests_total" in r.text


def test_metrics_are_open_without_a_token(api):
    assert api.client.get("/metrics").status_code == 200


def test_metrics_token_is_never_handed_down_in_the_settings_json(tmp_path):
    from .conftest import make_settings

    settings = make_settings(tmp_path, metrics_token="scrape-secret")
    assert "scrape-secret" not in settings.to_env()


# -- methods ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/embeddings/texts", "POST"),
        ("PUT", "/v1/embeddings/images", "POST"),
        ("DELETE", "/v1/usage", "GET, HEAD"),
        ("OPTIONS", "/v1/admin/keys", "GET, HEAD, POST"),
        ("GET", "/v1/admin/keys/key_x", "DELETE"),
        ("POST", "/healthz", "GET, HEAD"),
    ],
)
def test_405_lists_every_method_of_the_path(api, method, path, allow):
    r = api.client.request(method, path)
    _error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == allow


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/v1/models", "/openapi.json"])
def test_head_answers_like_get_without_a_body(api, path):
    get = api.client.get(path)
    head = api.client.head(path)
    assert head.status_code == get.status_code == 200
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == str(len(get.content))


# -- access log ------------------------------------------------------------------------------


def test_query_values_are_redacted_except_the_apis_own():
    from vendor_service.middleware import RedactQueryFilter, redact_query

    assert redact_query("/v1/usage?api_key=vk_secret&limit=5") == (
        "/v1/usage?api_key=REDACTED&limit=5"
    )
    assert redact_query("/v1/usage?cursor=12&key=vk_x&flag") == (
        "/v1/usage?cursor=12&key=REDACTED&flag"
    )
    assert redact_query("/healthz") == "/healthz"
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/v1/usage?api_key=vk_secret", "1.1", 401),
        None,
    )
    assert RedactQueryFilter().filter(record)
    assert "vk_secret" not in record.getMessage() and "api_key=REDACTED" in record.getMessage()


# -- an offline `serve` of pretrained weights ------------------------------------------------


def test_offline_serve_of_uncached_pretrained_weights_is_one_line(tmp_path):
    import os
    import subprocess
    import sys

    from tests.helpers.vendor_process import REPO_ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith(("VENDOR_", "HF_"))}
    env.update(
        VENDOR_ADMIN_TOKEN="t",
        HF_HOME=str(tmp_path / "hf"),  # an empty cache
        HF_ENDPOINT="http://127.0.0.1:9",  # a hub that cannot be reached, network or not
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "vendor_service.cli", "serve", "--model.name", "ViT-B-32",
         "--model.pretrained", "openai", "--data-dir", str(tmp_path / "d"), "--port", "1"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "'openai' weights of ViT-B-32" in lines[0] and "cannot be reached" in lines[0]
    assert "--model.pretrained" in lines[0]  # what to do instead
    assert time.perf_counter() - started < 120  # no minute of download retries
