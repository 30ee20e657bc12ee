"""Abandoned requests: a client that disconnects before its answer is stored pays nothing.

A real server (1 worker, vl2v-tiny) whose inference worker sleeps before each batch
(``debug_delay_ms``), so one request is inside the model and the next one waits in the queue
while their clients hang up (raw sockets, closed mid-request). The test paces itself on what
the ledger shows (each request's charge), not on wall time, so a loaded machine only makes it
slower. Afterwards the ledger (SQLite,
read-only) and ``/metrics`` say what happened to each.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers.vendor_process import VendorProcess, start_vendor
from tests.reliability.conftest import LEVELS, Level, read_only, write_figures

pytestmark = pytest.mark.slow
DELAY_MS = 3000


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VendorProcess]:
    v = start_vendor(tmp_path_factory.mktemp("abandoned"), debug_delay_ms=DELAY_MS)
    yield v
    v.stop()


def _send(vendor: VendorProcess, key: str, text: str, idem: str) -> socket.socket:
    body = json.dumps({"texts": [text]}).encode()
    sock = socket.create_connection(("127.0.0.1", vendor.port), timeout=30)
    sock.sendall(
        b"POST /v1/embeddings/texts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {key}\r\nIdempotency-Key: {idem}\r\n".encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return sock


def _metric(text: str, name: str, labels: str) -> float:
    m = re.search(rf"^{name}\{{{labels}\}} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def _ledger(vendor: VendorProcess, key_id: str) -> tuple[int, list[tuple[str, str, int]]]:
    conn = read_only(vendor.data_dir / "ledger.sqlite3")
    try:
        used = conn.execute("SELECT used FROM keys WHERE id = ?", (key_id,)).fetchone()[0]
        rows = conn.execute(
            "SELECT idempotency_key, status, queries FROM ledger WHERE key_id = ? ORDER BY seq",
            (key_id,),
        ).fetchall()
    finally:
        conn.close()
    return used, [tuple(r) for r in rows]


def _wait_charged(vendor: VendorProcess, key_id: str, n: int, timeout: float = 30.0) -> float:
    """Wait until the key has ``n`` charged rows in the ledger; the monotonic time then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, rows = _ledger(vendor, key_id)
        if sum(r[1] == "charged" for r in rows) >= n:
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"{n} charges not seen within {timeout:.0f} s")


@pytest.mark.parametrize("level", LEVELS)
def test_a_client_that_hangs_up_is_refunded_and_its_queued_job_dropped(
    vendor: VendorProcess, level: Level
) -> None:
    created = httpx.post(
        vendor.base_url + "/v1/admin/keys",
        json={"name": f"abandon-{level.name}", "budget": 10},
        headers=vendor.admin_headers(),
        timeout=30,
    ).json()
    key, key_id = created["key"], created["info"]["id"]
    before = httpx.get(vendor.base_url + "/metrics", timeout=30).text
    batches_before = _metric(before, "vendor_batch_size_count", 'kind="texts"')

    running = _send(vendor, key, "inside the model", f"{level.name}-running")
    first_charged = _wait_charged(vendor, key_id, 1)
    # The worker waits on its queue, so it takes the job as soon as it is submitted (right
    # after the charge): a little later the job sleeps in its batch for DELAY_MS.
    time.sleep(0.2)
    queued = _send(vendor, key, "waiting in the queue", f"{level.name}-queued")
    _wait_charged(vendor, key_id, 2)
    charged_while_waiting, _ = _ledger(vendor, key_id)
    queued.close()  # both clients hang up before their answers exist
    running.close()
    hung_up_after_s = time.monotonic() - first_charged
    # The premise: the hang-ups came while the first job was still inside the model.
    assert hung_up_after_s < 0.8 * DELAY_MS / 1000, f"too slow to test: {hung_up_after_s:.1f} s"

    deadline = time.monotonic() + 3 * DELAY_MS / 1000 + 10
    while time.monotonic() < deadline:
        used, rows = _ledger(vendor, key_id)
        if used == 0 and len(rows) == 2 and all(r[1] == "refunded" for r in rows):
            break
        time.sleep(0.2)
    after = httpx.get(vendor.base_url + "/metrics", timeout=30).text
    queued_n = _metric(after, "vendor_abandoned_requests_total", 'stage="queued"')
    running_n = _metric(after, "vendor_abandoned_requests_total", 'stage="running"')

    # the retry of an abandoned request is charged once, as new (its key was freed)
    retry = httpx.post(
        vendor.base_url + "/v1/embeddings/texts",
        json={"texts": ["waiting in the queue"]},
        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": f"{level.name}-queued"},
        timeout=60,
    )
    final_used, final_rows = _ledger(vendor, key_id)
    # model calls since the start: the running one's and the retry's (a batch is counted once
    # the model returns, so only after the retry is the count settled)
    last = httpx.get(vendor.base_url + "/metrics", timeout=30).text
    batches = _metric(last, "vendor_batch_size_count", 'kind="texts"') - batches_before
    write_figures(
        "abandoned",
        level,
        {
            "charged_while_waiting": charged_while_waiting,
            "hung_up_after_first_charge_s": round(hung_up_after_s, 2),
            "used_after_hang_up": used,
            "ledger": [list(r) for r in rows],
            "abandoned_queued": queued_n,
            "abandoned_running": running_n,
            "model_calls_incl_retry": batches,
            "retry_status": retry.status_code,
            "used_after_retry": final_used,
        },
    )
    assert charged_while_waiting == 2  # both were charged before the model ran
    assert used == 0 and sorted(r[1] for r in rows) == ["refunded", "refunded"]
    assert queued_n >= 1 and running_n >= 1
    assert batches == 2  # the running one and the retry: the queued job never reached the model
    assert retry.status_code == 200 and retry.headers["x-queries-charged"] == "1"
    assert final_used == 1 and [r[1] for r in final_rows].count("charged") == 1
