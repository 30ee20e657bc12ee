"""Real `vendor-service serve` processes on loopback: exact budgets under concurrency with two
workers, restarts, and idempotency across a SIGKILL."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from shared_schemas import decode_embedding
from tests.helpers.vendor_process import start_vendor

from .conftest import image_b64

pytestmark = pytest.mark.slow


def _metric_sum(text: str, name: str) -> float:
    return sum(float(m) for m in re.findall(rf"^{name}{{[^}}]*}} ([0-9.e+]+)$", text, re.MULTILINE))


def test_budget_is_exact_under_concurrent_load_with_two_workers(tmp_path):
    budget = 50
    sizes = [1, 2, 3] * 14  # 42 requests, demand 84 queries > budget
    demand = sum(sizes)
    with start_vendor(tmp_path, workers=2, max_batch=16, rate_limit_burst=10_000) as vendor:
        key = vendor.create_key(budget, name="load")
        headers = {"Authorization": f"Bearer {key}"}
        image = image_b64()

        def call(i: int) -> tuple[int, int, int]:
            n = sizes[i]
            if i % 2:
                path, body = "/v1/embeddings/images", {"images": [image] * n}
            else:
                path, body = "/v1/embeddings/texts", {"texts": [f"text {i}.{j}" for j in range(n)]}
            r = httpx.post(vendor.base_url + path, json=body, headers=headers, timeout=120)
            served = len(r.json()["data"]) if r.status_code == 200 else 0
            return r.status_code, int(r.headers["x-queries-charged"]), served

        with ThreadPoolExecutor(max_workers=12) as pool:
            results = list(pool.map(call, range(len(sizes))))

        statuses = {s for s, _, _ in results}
        assert statuses <= {200, 402}, results
        ok = [(c, n) for s, c, n in results if s == 200]
        refused = [c for s, c, _ in results if s == 402]
        charged_in_headers = sum(c for c, _ in ok)
        served = sum(n for _, n in ok)
        assert all(c == n for c, n in ok)  # each success was charged exactly its items
        assert refused and all(c == 0 for c in refused)  # refusals charged nothing

        usage = vendor.usage(key, limit=1000)
        used = usage["budget"]["used"]
        assert used == served == charged_in_headers
        assert budget - max(sizes) < used <= budget  # refused only when it could not fit
        charged_rows = [e for e in usage["entries"] if e["status"] == "charged"]
        assert len(charged_rows) == len(ok) and sum(e["queries"] for e in charged_rows) == used
        assert len(usage["entries"]) == len(ok)  # a 402 leaves no ledger row
        metrics = httpx.get(vendor.base_url + "/metrics", timeout=30).text
        assert _metric_sum(metrics, "vendor_queries_charged_total") == used  # both workers

        print(
            f"\nconcurrency figures: demand={demand} queries in {len(sizes)} requests, "
            f"budget={budget}, charged={used}, served={served} in {len(ok)} requests, "
            f"refused={len(refused)} (402, charged 0)"
        )
        vendor.restart()
        after = vendor.usage(key, limit=1000)
        assert after["budget"] == usage["budget"]
        assert after["entries"] == usage["entries"]


def test_idempotency_across_restart_and_sigkill_refund(tmp_path):
    # Every batch sleeps 2 s in the worker, so a charged request is reliably still in flight
    # when the server is SIGKILLed.
    vendor = start_vendor(tmp_path, workers=1, debug_delay_ms=2000)
    try:
        key = vendor.create_key(20, name="idem")
        h = {"Authorization": f"Bearer {key}"}
        url = vendor.base_url + "/v1/embeddings/texts"
        body_a = {"texts": ["a photo of a house", "a sketch of a tree"]}
        first = httpx.post(url, json=body_a, headers={**h, "Idempotency-Key": "A"}, timeout=60)
        assert first.status_code == 200 and first.headers["x-queries-charged"] == "2"

        # Request B is charged, then the server dies before it answers.
        body_b = {"texts": ["x", "y", "z"]}
        outcome: dict = {}

        def send_b() -> None:
            try:
                outcome["resp"] = httpx.post(
                    url, json=body_b, headers={**h, "Idempotency-Key": "B"}, timeout=60
                )
            except httpx.HTTPError as exc:
                outcome["error"] = exc

        t = threading.Thread(target=send_b)
        t.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if vendor.usage(key)["budget"]["used"] == 5:
                break
            time.sleep(0.05)
        assert vendor.usage(key)["budget"]["used"] == 5  # B charged, in flight
        vendor.kill()
        t.join(30)
        assert "error" in outcome  # the client never got B's embeddings

        vendor.restart()
        usage = vendor.usage(key)
        assert usage["budget"]["used"] == 2  # B refunded at start
        by_key = {e["idempotency_key"]: e for e in usage["entries"]}
        assert by_key["B"]["status"] == "refunded" and by_key["A"]["status"] == "charged"

        replay = httpx.post(url, json=body_a, headers={**h, "Idempotency-Key": "A"}, timeout=60)
        assert replay.status_code == 200 and replay.headers["x-queries-charged"] == "0"
        np.testing.assert_array_equal(
            [decode_embedding(d["embedding"]) for d in replay.json()["data"]],
            [decode_embedding(d["embedding"]) for d in first.json()["data"]],
        )
        mismatch = httpx.post(
            url, json={"texts": ["other"]}, headers={**h, "Idempotency-Key": "A"}, timeout=60
        )
        assert mismatch.status_code == 422
        assert mismatch.json()["error"]["code"] == "idempotency_key_reused"

        retry_b = httpx.post(url, json=body_b, headers={**h, "Idempotency-Key": "B"}, timeout=60)
        assert retry_b.status_code == 200 and retry_b.headers["x-queries-charged"] == "3"
        assert vendor.usage(key)["budget"]["used"] == 5  # A once + B once
    finally:
        vendor.stop()
