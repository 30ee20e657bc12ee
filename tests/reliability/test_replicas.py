"""Three vendor replicas on one PostgreSQL ledger (issue 15): exact budgets across replicas.

Real processes: a PostgreSQL server (``tests/helpers/postgres.py``) and three ``vendor-service
serve --database-url ...`` on different ports and data dirs. Client threads spread their
requests over the replicas, send every retry of a request (same Idempotency-Key and body) to a
*different* replica than the attempt before, and re-send a third of the answered ones (a client
retry, which must be a free replay wherever it lands). Midway one replica is SIGKILLed (the
others keep serving) and restarted. Afterwards the ledger in PostgreSQL must say, for every key:
charged == served (each answered request charged exactly once, under the request id its answer
carries), used <= limit, no Idempotency-Key charged twice, nothing left in flight.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from tests.helpers.postgres import postgres_server  # noqa: F401 - a fixture
from tests.helpers.vendor_process import VendorProcess, start_vendor
from tests.reliability.conftest import auth, write_figures


@dataclass(frozen=True)
class ReplicaLevel:
    name: str
    replicas: int
    workers: int  # per replica
    clients: int
    keys: int
    budget: int
    kills: int
    seconds: float  # of load after the last restart


REDUCED = ReplicaLevel("reduced", 3, 1, 16, 3, 60, 1, 4.0)
FULL = ReplicaLevel("full", 3, 2, 64, 4, 300, 2, 8.0)
LEVELS = [
    pytest.param(REDUCED, id="reduced"),
    pytest.param(FULL, id="full", marks=pytest.mark.reliability),
]
pytestmark = pytest.mark.slow


@dataclass
class Logical:
    key: str
    body: dict[str, Any]
    n: int
    idem: str = field(default_factory=lambda: "idem-" + uuid.uuid4().hex)
    answer: tuple[int, str | None] | None = None  # (status, request id of a 200)
    replays: list[tuple[str, int]] = field(default_factory=list)  # (request id, charged)
    replicas_tried: list[int] = field(default_factory=list)


class Load:
    def __init__(self, replicas: list[VendorProcess], keys: list[str], clients: int) -> None:
        self.replicas = replicas
        self.keys = keys
        self.clients = clients
        self.logicals: list[Logical] = []
        self.served_by: Counter[int] = Counter()
        self.statuses: Counter[str] = Counter()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.errors: list[BaseException] = []
        self.down: int | None = None
        self.served_while_down = 0

    def _post(self, i: int, lg: Logical) -> httpx.Response | None:
        headers = {**auth(lg.key), "Idempotency-Key": lg.idem}
        lg.replicas_tried.append(i)
        try:
            resp = httpx.post(
                self.replicas[i].base_url + "/v1/embeddings/texts",
                json=lg.body,
                headers=headers,
                timeout=60,
            )
        except httpx.HTTPError:
            with self.lock:
                self.statuses["none"] += 1
            return None
        with self.lock:
            self.statuses[str(resp.status_code)] += 1
            if resp.status_code == 200:
                self.served_by[i] += 1
                if self.down is not None and i != self.down:
                    self.served_while_down += 1
        return resp

    def _resolve(self, lg: Logical, rng: random.Random, first: int) -> int:
        """Send until answered (200 or 402); each retry to another replica. Returns the last."""
        i = first
        for attempt in range(400):
            resp = self._post(i, lg)
            if resp is not None and resp.status_code in (200, 402):
                rid = resp.json()["request_id"] if resp.status_code == 200 else None
                if lg.answer is None:
                    lg.answer = (resp.status_code, rid)
                    if resp.status_code == 200:
                        assert resp.headers["x-queries-charged"] == str(lg.n)
                        assert resp.headers.get("idempotent-replayed") != "true"
                else:  # a retry after the first answer: a replay of the same request
                    assert resp.status_code == lg.answer[0] == 200, (resp.text, lg.answer)
                    lg.replays.append((rid, int(resp.headers["x-queries-charged"])))
                return i
            assert resp is None or resp.status_code in (409, 429, 503), resp.text
            i = rng.choice([r for r in range(len(self.replicas)) if r != i])
            time.sleep(min(1.0, 0.05 * 2 ** min(attempt, 4)) * (0.5 + rng.random()))
        raise TimeoutError(f"no answer for {lg.idem} after 400 attempts")

    def client(self, c: int) -> None:
        rng = random.Random(c)
        try:
            while not self.stop.is_set():
                n = rng.randint(1, 6)
                body = {"texts": [f"c{c} {uuid.uuid4().hex[:8]} {j}" for j in range(n)]}
                lg = Logical(rng.choice(self.keys), body, n)
                with self.lock:
                    self.logicals.append(lg)
                last = self._resolve(lg, rng, rng.randrange(len(self.replicas)))
                if lg.answer and lg.answer[0] == 200 and rng.random() < 0.35:
                    other = rng.choice([r for r in range(len(self.replicas)) if r != last])
                    self._resolve(lg, rng, other)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            self.errors.append(exc)
            self.stop.set()

    def served_count(self) -> int:
        with self.lock:
            return self.statuses["200"]

    def wait_served(self, count: int, timeout: float = 120) -> None:
        start = self.served_count()
        deadline = time.monotonic() + timeout
        while self.served_count() - start < count:
            if time.monotonic() > deadline or self.errors:
                raise TimeoutError(f"fewer than {count} answers in {timeout}s: {self.errors}")
            time.sleep(0.02)


def _ledger(url: str) -> tuple[dict[str, dict], list[dict]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        keys = {r["id"]: r for r in conn.execute("SELECT * FROM keys")}
        rows = list(conn.execute("SELECT * FROM ledger ORDER BY seq"))
    return keys, rows


@pytest.mark.parametrize("level", LEVELS)
def test_replicas_share_one_exact_ledger_through_a_replica_kill(
    postgres_server,  # noqa: F811 - the fixture imported above
    tmp_path,
    level: ReplicaLevel,
) -> None:
    url = postgres_server.create_database()
    knobs = {"database_url": url, "debug_delay_ms": 20, "max_items_per_request": 16}
    replicas: list[VendorProcess] = []
    try:
        for i in range(level.replicas):
            replicas.append(start_vendor(tmp_path / f"replica-{i}", workers=level.workers, **knobs))
        keys, key_ids = [], []
        for k in range(level.keys):
            created = replicas[k % level.replicas]._call(
                "/v1/admin/keys",
                replicas[k % level.replicas].admin_token,
                {"name": f"rep-{k}", "budget": level.budget, "rate_limit_rps": 1000.0,
                 "rate_limit_burst": 1000},
            )  # fmt: skip
            keys.append(created["key"])
            key_ids.append(created["info"]["id"])
        load = Load(replicas, keys, level.clients)
        threads = [
            threading.Thread(target=load.client, args=(c,), daemon=True)
            for c in range(level.clients)
        ]
        for t in threads:
            t.start()
        kills = []
        rng = random.Random(0)
        for _ in range(level.kills):
            load.wait_served(10)
            victim = rng.randrange(level.replicas)
            replicas[victim].kill()  # SIGKILL, every worker of that replica at once
            load.down = victim
            t_kill = time.monotonic()
            load.wait_served(10)  # the others keep serving
            served_down = load.served_while_down
            replicas[victim].restart()
            load.down = None
            kills.append(
                {"replica": victim, "down_s": round(time.monotonic() - t_kill, 1),
                 "served_by_others_while_down": served_down}
            )  # fmt: skip
            load.served_while_down = 0
            # The small budgets run out under load: top them up so charging goes on.
            for key_id, r in zip(key_ids, replicas, strict=False):
                r._call(f"/v1/admin/keys/{key_id}/topup", r.admin_token, {"queries": 40})
        time.sleep(level.seconds)
        load.stop.set()
        for t in threads:
            t.join(300)
        assert not load.errors, load.errors
        assert all(k["served_by_others_while_down"] > 0 for k in kills), kills

        # Heartbeats of the survivors reaped the killed replicas' in-flight charges.
        deadline = time.monotonic() + 30
        while any(r["state"] == "in_flight" for r in _ledger(url)[1]):
            assert time.monotonic() < deadline, "charges left in flight"
            time.sleep(0.2)
        db_keys, rows = _ledger(url)
        by_rid = {r["request_id"]: r for r in rows}
        charged_rows = [r for r in rows if r["status"] == "charged"]
        per_idem = Counter(r["idempotency_key"] for r in charged_rows)
        assert max(per_idem.values()) == 1, "an Idempotency-Key was charged twice"
        answered = [lg for lg in load.logicals if lg.answer is not None]
        served = [lg for lg in answered if lg.answer[0] == 200]
        for lg in served:
            row = by_rid[lg.answer[1]]  # the answer's request id is the charged row
            assert (row["status"], row["idempotency_key"], row["queries"]) == (
                "charged", lg.idem, lg.n
            )  # fmt: skip
            for rid, charged in lg.replays:  # a retry on another replica: free, same answer
                assert (rid, charged) == (lg.answer[1], 0)
        refused = {lg.idem for lg in answered if lg.answer[0] == 402}
        assert not refused & set(per_idem), "a refused request has a charge"
        assert {r["request_id"] for r in charged_rows} == {lg.answer[1] for lg in served}
        per_key = {}
        for key, key_id in zip(keys, key_ids, strict=True):
            charged = sum(r["queries"] for r in charged_rows if r["key_id"] == key_id)
            served_q = sum(lg.n for lg in served if lg.key == key)
            assert charged == served_q == db_keys[key_id]["used"]
            assert db_keys[key_id]["used"] <= db_keys[key_id]["budget_limit"]
            budgets = {r.usage(key)["budget"]["used"] for r in replicas}
            assert budgets == {charged}  # every replica reads the same ledger
            per_key[key_id] = {"limit": db_keys[key_id]["budget_limit"], "charged": charged}
        statuses = dict(load.statuses)
        assert statuses.get("402", 0) > 0 and statuses.get("none", 0) > 0, statuses
        assert sum(len(lg.replays) for lg in served) > 0
        assert len(load.served_by) == level.replicas  # every replica served
        write_figures(
            "replicas",
            level,
            {
                "replicas": level.replicas,
                "workers_per_replica": level.workers,
                "clients": level.clients,
                "logical_requests": len(load.logicals),
                "served_requests": len(served),
                "charged_queries": sum(k["charged"] for k in per_key.values()),
                "served_queries": sum(lg.n for lg in served),
                "replays_on_another_replica": sum(len(lg.replays) for lg in served),
                "refunded_rows": sum(r["status"] == "refunded" for r in rows),
                "status_counts": dict(sorted(statuses.items())),
                "served_by_replica": dict(sorted(load.served_by.items())),
                "kills": kills,
                "per_key": per_key,
            },
        )
    finally:
        for r in replicas:
            r.stop()
