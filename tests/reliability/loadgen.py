"""Concurrent load against a real vendor, with idempotent retries and optional SIGKILLs, and
the checks that prove the metering stayed exact.

The client threads record every HTTP attempt; ``verify`` then compares those records with the
vendor's SQLite ledger (read-only) and with ``GET /v1/usage``.
"""

from __future__ import annotations

import base64
import io
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from PIL import Image

from tests.helpers.vendor_process import VendorProcess
from tests.reliability.conftest import all_usage_entries, auth, ledger_db, read_only


def png_pool(n: int = 12, seed: int = 0) -> list[str]:
    """Small distinct real PNG files, base64-encoded."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        arr = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "PNG")
        out.append(base64.b64encode(buf.getvalue()).decode())
    return out


@dataclass
class Logical:
    """One logical request: a body, maybe an Idempotency-Key, sent one or more times."""

    id: int
    key: str
    endpoint: str
    body: dict[str, Any]
    n: int
    idem: str | None


@dataclass
class Attempt:
    """One HTTP attempt of a logical request and what came back (status None: no response)."""

    logical: int
    status: int | None
    header_request_id: str | None = None
    body_request_id: str | None = None
    charged: int | None = None
    replayed: bool = False
    queries: int | None = None
    after_kill: int = 0  # vendor kills that had happened when the attempt was sent


@dataclass
class LoadResult:
    logicals: dict[int, Logical] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    kills: int = 0
    refunded_at_restart: int = 0
    seconds: float = 0.0


class LoadRunner:
    """64 (or fewer) threads of random requests; ``kills`` SIGKILL/restart cycles meanwhile.

    Every logical request gets an Idempotency-Key when ``always_idem`` (needed when the vendor
    may die: a charge whose response was lost must be recoverable), else 70 % do. A random third
    of idempotent requests is sent again after its answer (a client retry); any request without
    an answer (connection reset by a kill) is retried with the same key and body until answered.
    """

    def __init__(
        self,
        vendor: VendorProcess,
        keys: list[str],
        *,
        threads: int,
        requests_per_thread: int,
        kills: int = 0,
        always_idem: bool = False,
        seed: int = 0,
        topup_per_restart: dict[str, int] | None = None,
    ) -> None:
        self.vendor = vendor
        self.keys = keys
        self.threads = threads
        self.requests_per_thread = requests_per_thread
        self.kills = kills
        self.always_idem = always_idem or kills > 0
        self.seed = seed
        self.topup = topup_per_restart or {}
        self.images = png_pool()
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._kills_done = 0
        self._next_id = 0
        self._errors: list[BaseException] = []
        self._log_offset = len(vendor.log_tail(10**9))

    # -- client threads ----------------------------------------------------------------------

    def _new_logical(self, rng: random.Random, thread: int) -> Logical:
        with self._lock:
            self._next_id += 1
            lid = self._next_id
        endpoint = "texts" if rng.random() < 0.7 else "images"
        n = rng.randint(1, 8)
        if endpoint == "texts":
            body: dict[str, Any] = {
                "texts": [f"t{thread} r{lid} i{j} {rng.random():.6f}" for j in range(n)]
            }
        else:
            body = {"images": [rng.choice(self.images) for _ in range(n)]}
        if rng.random() < 0.3:
            body["encoding_format"] = "base64"
        idem = ("idem-" + uuid.uuid4().hex) if (self.always_idem or rng.random() < 0.7) else None
        logical = Logical(lid, rng.choice(self.keys), endpoint, body, n, idem)
        with self._lock:
            self.result.logicals[lid] = logical
        return logical

    def _send(self, client: httpx.Client, lg: Logical) -> Attempt:
        headers = auth(lg.key)
        if lg.idem:
            headers["Idempotency-Key"] = lg.idem
        kills = self._kills_done
        try:
            resp = client.post(f"/v1/embeddings/{lg.endpoint}", json=lg.body, headers=headers)
        except httpx.HTTPError:
            attempt = Attempt(lg.id, None, after_kill=kills)
        else:
            attempt = Attempt(
                lg.id, resp.status_code, resp.headers.get("x-request-id"), after_kill=kills
            )
            if "x-queries-charged" in resp.headers:
                attempt.charged = int(resp.headers["x-queries-charged"])
            if resp.status_code == 200:
                body = resp.json()
                attempt.body_request_id = body["request_id"]
                attempt.queries = body["usage"]["queries"]
                attempt.replayed = resp.headers.get("idempotent-replayed") == "true"
                assert len(body["data"]) == lg.n, "answer with a wrong number of embeddings"
        with self._lock:
            self.result.attempts.append(attempt)
        return attempt

    def _resolve(
        self, client: httpx.Client, lg: Logical, rng: random.Random, deadline: float
    ) -> Attempt:
        """Send until answered; unanswered non-idempotent requests are not resent."""
        tries = 0
        while True:
            attempt = self._send(client, lg)
            answered = attempt.status is not None and attempt.status not in (409, 429, 503)
            if answered or lg.idem is None or time.monotonic() > deadline:
                return attempt
            # No answer (the vendor died), in flight (409) or throttled: retry the same bytes,
            # backing off so a restarting vendor is not starved of CPU by reconnect storms.
            tries += 1
            time.sleep(min(2.0, 0.2 * 2 ** min(tries, 4)) * (0.5 + rng.random()))

    def _client_thread(self, thread: int) -> None:
        rng = random.Random(self.seed * 1000 + thread)
        done = 0
        with httpx.Client(base_url=self.vendor.base_url, timeout=60) as client:
            while not self._stop.is_set():
                if not self.kills and done >= self.requests_per_thread:
                    return
                lg = self._new_logical(rng, thread)
                deadline = time.monotonic() + 600
                first = self._resolve(client, lg, rng, deadline)
                if lg.idem and first.status is not None and rng.random() < 0.35:
                    self._resolve(client, lg, rng, deadline)  # a client retry of a done request
                done += 1

    # -- chaos -------------------------------------------------------------------------------

    def _chaos(self) -> None:
        rng = random.Random(self.seed)
        for _ in range(self.kills):
            self._wait_for_successes(8 + rng.randint(0, 8))
            time.sleep(rng.random() * 0.3)
            self.vendor.kill()
            self._kills_done += 1
            self.vendor.restart()
            text = self.vendor.log_tail(10**9)[self._log_offset :]
            self.result.refunded_at_restart = sum(
                int(line.split()[1])
                for line in text.splitlines()
                if line.startswith("refunded ") and "left in flight" in line
            )
            for key, queries in self.topup.items():
                self._top_up(key, queries)
        self._wait_for_successes(8)  # some load after the last restart too
        self._stop.set()

    def _wait_for_successes(self, count: int) -> None:
        with self._lock:
            start = sum(a.status == 200 for a in self.result.attempts)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with self._lock:
                now = sum(a.status == 200 for a in self.result.attempts)
            if now - start >= count:
                return
            time.sleep(0.02)
        raise TimeoutError(f"fewer than {count} successful requests in 120 s")

    def _top_up(self, key: str, queries: int) -> None:
        usage = httpx.get(self.vendor.base_url + "/v1/usage", headers=auth(key), timeout=30)
        usage.raise_for_status()
        key_id = usage.json()["key_id"]
        httpx.post(
            f"{self.vendor.base_url}/v1/admin/keys/{key_id}/topup",
            json={"queries": queries},
            headers=self.vendor.admin_headers(),
            timeout=30,
        ).raise_for_status()

    # -- run ---------------------------------------------------------------------------------

    def run(self) -> LoadResult:
        t0 = time.perf_counter()

        def guarded(fn, *args) -> None:
            try:
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - re-raised in run() after join
                self._errors.append(exc)
                self._stop.set()

        workers = [
            threading.Thread(target=guarded, args=(self._client_thread, i), daemon=True)
            for i in range(self.threads)
        ]
        chaos = threading.Thread(target=guarded, args=(self._chaos,), daemon=True)
        for w in workers:
            w.start()
        if self.kills:
            chaos.start()
            chaos.join()
        for w in workers:
            w.join(900)
        self.result.kills = self._kills_done
        self.result.seconds = time.perf_counter() - t0
        if self._errors:
            raise self._errors[0]
        return self.result


# -- verification ----------------------------------------------------------------------------


@dataclass
class Verdict:
    """The figures of a verified load run."""

    figures: dict[str, Any]


def _ledger(vendor: VendorProcess) -> tuple[dict[str, dict], list[dict], str]:
    """(keys by id, ledger rows ordered by seq, integrity_check) from the SQLite file."""
    conn = read_only(ledger_db(vendor))
    try:
        keys = {r["id"]: dict(r) for r in conn.execute("SELECT * FROM keys")}
        rows = [dict(r) for r in conn.execute("SELECT * FROM ledger ORDER BY seq")]
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
    return keys, rows, integrity


def verify(vendor: VendorProcess, keys: list[str], result: LoadResult) -> Verdict:
    """Assert exact metering for every key; returns the run's figures.

    Checks, per key: charged == queries served (non-replay 200s) + charges whose response was
    lost but which replay with their Idempotency-Key; used <= limit; used == sum of charged
    ledger rows; no Idempotency-Key charged twice; no refusal charged; /v1/usage equals the
    ledger row by row; and PRAGMA integrity_check == ok.
    """
    logicals, attempts = result.logicals, result.attempts
    key_ids = {key: all_usage_entries(vendor, key)[0]["key_id"] for key in keys}
    db_keys, rows, integrity = _ledger(vendor)
    assert integrity == "ok"

    status_counts = Counter("none" if a.status is None else str(a.status) for a in attempts)
    server_errors = sum(1 for a in attempts if a.status is not None and a.status >= 500)
    assert server_errors == 0, f"5xx answers: {status_counts}"
    unexpected = set(status_counts) - {"200", "402", "409", "429", "none"}
    assert not unexpected, f"unexpected statuses {status_counts}"

    by_rid = {r["request_id"]: r for r in rows}
    served = [a for a in attempts if a.status == 200 and not a.replayed]
    replays = [a for a in attempts if a.status == 200 and a.replayed]
    refusals = [a for a in attempts if a.status is not None and a.status != 200]
    for a in served:
        assert a.header_request_id == a.body_request_id
        row = by_rid.get(a.body_request_id)
        assert row is not None, f"served request {a.body_request_id} missing from the ledger"
        assert row["status"] == "charged" and row["state"] == "done", row
        assert row["queries"] == a.queries == a.charged == logicals[a.logical].n
        assert row["key_id"] == key_ids[logicals[a.logical].key]
    served_rids = {a.body_request_id for a in served}
    assert len(served_rids) == len(served)
    for a in replays:
        assert a.charged == 0 and a.queries == 0
        row = by_rid[a.body_request_id]  # the replay carries the original's request id
        assert row["status"] == "charged"
        assert row["idempotency_key"] == logicals[a.logical].idem
        assert a.header_request_id not in by_rid  # the replay itself charged nothing
    for a in refusals:
        assert a.header_request_id not in by_rid, f"refusal {a.status} has a ledger row"
        assert a.charged in (0, None)

    # A charge whose first answer was lost (the vendor died) and whose client retry got the
    # stored answer back: delivered by replay only.
    replay_rids = {a.body_request_id for a in replays}
    replayed_only = [
        r for r in rows if r["status"] == "charged" and r["request_id"] in replay_rids - served_rids
    ]
    # Charges whose answer never arrived: each must replay with its Idempotency-Key now.
    delivered = served_rids | replay_rids
    lost = [
        r
        for r in rows
        if r["status"] == "charged"
        and r["request_id"] not in delivered
        and r["key_id"] in key_ids.values()
    ]
    by_idem = {lg.idem: lg for lg in logicals.values() if lg.idem}
    with httpx.Client(base_url=vendor.base_url, timeout=60) as client:
        for r in lost:
            assert r["idempotency_key"] is not None, f"charge {r['request_id']} lost, no key"
            lg = by_idem[r["idempotency_key"]]
            resp = client.post(
                f"/v1/embeddings/{lg.endpoint}",
                json=lg.body,
                headers={**auth(lg.key), "Idempotency-Key": lg.idem},
            )
            assert resp.status_code == 200, resp.text
            assert resp.headers["idempotent-replayed"] == "true"
            assert resp.json()["request_id"] == r["request_id"]
    refunded = [r for r in rows if r["status"] == "refunded" and r["key_id"] in key_ids.values()]
    for r in refunded:
        assert r["request_id"] not in delivered, "a delivered answer was refunded"

    per_key = {}
    for key, key_id in key_ids.items():
        mine = [r for r in rows if r["key_id"] == key_id]
        charged_rows = [r for r in mine if r["status"] == "charged"]
        charged = sum(r["queries"] for r in charged_rows)
        idem_counts = Counter(r["idempotency_key"] for r in charged_rows if r["idempotency_key"])
        assert not idem_counts or max(idem_counts.values()) == 1, "an idempotency key paid twice"
        served_q = sum(a.queries for a in served if logicals[a.logical].key == key)
        lost_q = sum(r["queries"] for r in lost if r["key_id"] == key_id)
        replayed_q = sum(r["queries"] for r in replayed_only if r["key_id"] == key_id)
        assert charged == served_q + replayed_q + lost_q, (
            key_id,
            charged,
            served_q,
            replayed_q,
            lost_q,
        )
        assert db_keys[key_id]["used"] == charged <= db_keys[key_id]["budget_limit"]
        assert all(r["state"] == "done" for r in mine), "in-flight rows after the run"
        _assert_usage_matches(vendor, key, mine, db_keys[key_id])
        per_key[key_id] = {
            "limit": db_keys[key_id]["budget_limit"],
            "charged": charged,
            "served": served_q,
            "delivered_by_retry_replay": replayed_q,
            "lost_then_replayed": lost_q,
        }

    figures = {
        "threads": None,
        "requests": len(attempts),
        "answered_requests": sum(a.status is not None for a in attempts),
        "logical_requests": len(logicals),
        "kills": result.kills,
        "charged_queries": sum(k["charged"] for k in per_key.values()),
        "served_queries": sum(a.queries for a in served),
        "served_requests": len(served),
        "replays": len(replays),
        "answers_lost_to_kill_then_replayed_on_retry": len(replayed_only),
        "lost_answers_replayed": len(lost),
        "refunded_rows": len(refunded),
        "refunded_at_restart_log": result.refunded_at_restart,
        "status_counts": dict(sorted(status_counts.items())),
        "http_5xx": server_errors,
        "integrity_check": integrity,
        "seconds": round(result.seconds, 1),
        "per_key": per_key,
    }
    return Verdict(figures)


def _assert_usage_matches(vendor: VendorProcess, key: str, rows: list[dict], db_key: dict) -> None:
    """``GET /v1/usage`` (every page) equals the SQLite ledger of this key, row by row."""
    first, entries = all_usage_entries(vendor, key)
    assert first["budget"]["used"] == db_key["used"]
    assert first["budget"]["limit"] == db_key["budget_limit"]
    expected = [
        (
            r["request_id"],
            r["endpoint"],
            r["queries"],
            r["status"],
            r["idempotency_key"],
            r["created_at"],
        )
        for r in sorted(rows, key=lambda r: -r["seq"])
    ]
    got = [
        (
            e["request_id"],
            e["endpoint"],
            e["queries"],
            e["status"],
            e["idempotency_key"],
            e["created_at"],
        )
        for e in entries
    ]
    assert [g[:5] for g in got] == [e[:5] for e in expected]
    for g, e in zip(got, expected, strict=False):  # same instant, whatever the ISO spelling of UTC
        assert _ts(g[5]) == _ts(e[5])
    totals: dict[str, int] = defaultdict(int)
    for r in rows:
        if r["status"] == "charged":
            totals[r["endpoint"]] += r["queries"]
    assert first["queries_by_endpoint"] == dict(totals)
    assert first["requests"] == sum(r["status"] == "charged" for r in rows)


def _ts(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
