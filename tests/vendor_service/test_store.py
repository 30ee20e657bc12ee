"""SQLiteStore on its own: exact charging from several processes at once, refunds, paging."""

from __future__ import annotations

import multiprocessing as mp
import random
from pathlib import Path

from vendor_service.metering import ChargeOutcome, SQLiteStore


def _hammer(db: str, key_id: str, worker: int, n_charges: int, out: mp.Queue) -> None:
    store = SQLiteStore(db)
    rng = random.Random(worker)
    charged = refused = 0
    for i in range(n_charges):
        q = rng.randint(1, 5)
        res = store.charge(key_id, q, request_id=f"w{worker}-{i}", endpoint="texts", owner="o")
        if res.outcome is ChargeOutcome.CHARGED:
            charged += q
            if i % 7 == 0:  # some requests fail after charging and are refunded
                store.refund(key_id, f"w{worker}-{i}")
                charged -= q
        else:
            assert res.outcome is ChargeOutcome.INSUFFICIENT
            refused += 1
    store.close()
    out.put((charged, refused))


def test_charges_from_four_processes_never_exceed_the_budget(tmp_path: Path):
    db = str(tmp_path / "ledger.sqlite3")
    store = SQLiteStore(db)
    _, key = store.create_key("shared", budget=400)
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(db, key.id, w, 60, out)) for w in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    charged = sum(c for c, _ in results)
    demand_exceeded = sum(r for _, r in results) > 0
    used = store.get_key(key.id).used
    usage = store.usage(key.id, limit=10_000)
    assert used == charged <= 400
    assert demand_exceeded and used > 400 - 5  # refused only when the request could not fit
    assert sum(e.queries for e in usage.entries if e.status == "charged") == used
    assert sum(usage.queries_by_endpoint.values()) == used
    store.close()


def test_complete_then_replay_and_refund_is_single(tmp_path: Path):
    store = SQLiteStore(tmp_path / "l.sqlite3")
    _, key = store.create_key("k", budget=10)
    kw = {"endpoint": "images", "owner": "o", "idem_key": "i", "body_sha256": "s"}
    assert store.charge(key.id, 3, request_id="r1", **kw).outcome is ChargeOutcome.CHARGED
    store.complete(key.id, "r1", b'{"x": 1}')
    replay = store.charge(key.id, 3, request_id="r2", **kw)
    assert replay.outcome is ChargeOutcome.REPLAY and replay.stored_response == b'{"x": 1}'
    assert store.get_key(key.id).used == 3
    assert store.recover_stale("other") == 0  # a completed charge is never refunded
    store.refund(key.id, "r9")  # unknown request: no effect
    assert store.get_key(key.id).used == 3
    store.close()
