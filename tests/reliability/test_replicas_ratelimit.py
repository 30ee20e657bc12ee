"""Per-key rate limits hold across worker processes and replicas (issue 15), measured.

A key limited to 5 requests/s (burst 5) is hammered by several client threads spread over every
process: the accepted rate must be 5 +- 10 %. With SQLite (one machine) the workers share a
memory-mapped bucket file; with PostgreSQL every replica's workers share one SQL token bucket.
Before, each worker had its own bucket: 3 workers let 3x the rate through.
"""

from __future__ import annotations

import itertools
import threading
import time

import httpx
import pytest

from tests.helpers.postgres import postgres_server  # noqa: F401 - a fixture
from tests.helpers.vendor_process import VendorProcess, start_vendor
from tests.reliability.conftest import FULL, REDUCED, auth, write_figures

pytestmark = pytest.mark.slow

RPS = 5.0
#: One second's worth: with a burst of 1, tokens that come due between two (slow) requests are
#: capped away and the measured rate reads low; the first BURST requests are free and not counted.
BURST = 5


def _measure(servers: list[VendorProcess], key: str, seconds: float, threads: int = 6) -> dict:
    urls = itertools.cycle([s.base_url for s in servers])
    lock = threading.Lock()
    accepted: list[float] = []
    refused = 0
    start = time.monotonic()
    stop = start + seconds

    def client() -> None:
        nonlocal refused
        with httpx.Client(timeout=30) as http:
            while time.monotonic() < stop:
                with lock:
                    url = next(urls)
                resp = http.post(
                    url + "/v1/embeddings/texts", json={"texts": ["rate"]}, headers=auth(key)
                )
                with lock:
                    if resp.status_code == 200:
                        accepted.append(time.monotonic())
                    else:
                        assert resp.status_code == 429, resp.text
                        refused += 1
                time.sleep(0.02)

    pool = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(seconds + 60)
    # The bucket starts full at the first request: BURST answers at once, then the refill
    # alone, from the first accepted request to the last.
    elapsed = max(accepted) - min(accepted)
    rate = (len(accepted) - BURST) / elapsed
    return {"accepted": len(accepted), "refused_429": refused, "seconds": round(elapsed, 2),
            "rate_per_s": round(rate, 3), "limit_per_s": RPS}  # fmt: skip


def _key(server: VendorProcess) -> str:
    created = server._call(
        "/v1/admin/keys", server.admin_token,
        {"name": "rate", "budget": 10**6, "rate_limit_rps": RPS, "rate_limit_burst": BURST},
    )  # fmt: skip
    return str(created["key"])


def test_sqlite_workers_share_one_bucket(tmp_path) -> None:
    vendor = start_vendor(tmp_path, workers=3)
    try:
        figures = _measure([vendor], _key(vendor), seconds=10)
    finally:
        vendor.stop()
    write_figures("ratelimit-sqlite-3-workers", REDUCED, figures)
    assert figures["refused_429"] > figures["accepted"]  # the clients asked for far more
    assert abs(figures["rate_per_s"] - RPS) <= 0.1 * RPS, figures


@pytest.mark.reliability
def test_three_replicas_of_two_workers_share_one_bucket(
    postgres_server,  # noqa: F811 - the fixture imported above
    tmp_path,
) -> None:
    url = postgres_server.create_database()
    replicas = []
    try:
        for i in range(3):
            replicas.append(start_vendor(tmp_path / f"r{i}", workers=2, database_url=url))
        figures = _measure(replicas, _key(replicas[0]), seconds=20, threads=9)
    finally:
        for r in replicas:
            r.stop()
    figures["replicas"], figures["workers_per_replica"] = 3, 2
    write_figures("ratelimit-postgres-3x2", FULL, figures)
    assert figures["refused_429"] > figures["accepted"]
    assert abs(figures["rate_per_s"] - RPS) <= 0.1 * RPS, figures
