"""The ``Store`` contract, one suite run against SQLite and against a real PostgreSQL.

Exact charges (all-or-nothing, nothing charged on refusal), refunds that never double,
idempotency (replay, in flight, other body), completions that never finish a refunded charge,
owners (a dead one's charges refunded, a live one's never), group commit (one transaction for
many operations, each with its own outcome), cancellation, usage paging, schema versions and the
shared rate limiter.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.postgres import postgres_server  # noqa: F401 - a fixture
from vendor_service.metering import (
    ChargeOp,
    ChargeOutcome,
    CompleteOp,
    RefundOp,
    SchemaMismatch,
    Store,
)
from vendor_service.metering.owners import host_id
from vendor_service.metering.store import RegisterOwnerOp

Factory = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgres"])
def store_factory(request, tmp_path: Path) -> Iterator[Factory]:
    """Opens stores (one per simulated process) on one fresh database of the given kind."""
    opened: list[Store] = []
    if request.param == "sqlite":
        from vendor_service.metering import SQLiteStore

        def make() -> Store:
            opened.append(SQLiteStore(tmp_path / "ledger.sqlite3"))
            return opened[-1]

    else:
        from vendor_service.metering.postgres import PostgresStore

        url = request.getfixturevalue("postgres_server").create_database()

        def make() -> Store:
            opened.append(PostgresStore(url))
            return opened[-1]

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def store(store_factory: Factory) -> Store:
    return store_factory()


def _charge(store: Store, key_id: str, n: int, rid: str, **kw) -> ChargeOutcome:
    kw.setdefault("owner", "o")
    return store.charge(key_id, n, request_id=rid, endpoint="texts", **kw).outcome


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- charges ---------------------------------------------------------------------------------


def test_concurrent_charges_from_two_processes_never_exceed_the_budget(store_factory) -> None:
    stores = [store_factory(), store_factory()]  # two "processes", each with its own writer
    _, key = stores[0].create_key("shared", budget=100)
    charged: list[int] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        s = stores[i % 2]
        for j in range(15):
            n = 1 + (i + j) % 4
            if _charge(s, key.id, n, f"w{i}-{j}") is ChargeOutcome.CHARGED:
                with lock:
                    charged.append(n)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    used = stores[1].get_key(key.id).used
    usage = stores[0].usage(key.id, limit=1000)
    assert used == sum(charged) <= 100
    assert used > 100 - 4  # refused only when the request could not fit
    assert sum(e.queries for e in usage.entries if e.status == "charged") == used


def test_a_refused_charge_charges_nothing(store: Store) -> None:
    _, key = store.create_key("k", budget=5)
    assert _charge(store, key.id, 4, "r1") is ChargeOutcome.CHARGED
    result = store.charge(key.id, 2, request_id="r2", endpoint="images", owner="o")
    assert (result.outcome, result.limit, result.used) == (ChargeOutcome.INSUFFICIENT, 5, 4)
    assert [e.request_id for e in store.usage(key.id).entries] == ["r1"]
    store.revoke(key.id)
    assert _charge(store, key.id, 1, "r3") is ChargeOutcome.UNKNOWN_KEY
    assert _charge(store, "key_nope", 1, "r4") is ChargeOutcome.UNKNOWN_KEY
    assert store.get_key(key.id).used == 4


def test_idempotency_replay_in_flight_and_other_body(store: Store) -> None:
    _, key = store.create_key("k", budget=10)
    kw = {"idem_key": "i", "body_sha256": "s"}
    assert _charge(store, key.id, 3, "r1", **kw) is ChargeOutcome.CHARGED
    assert _charge(store, key.id, 3, "r2", **kw) is ChargeOutcome.IN_FLIGHT
    assert store.lookup_idempotent(key.id, "i", "s").outcome is ChargeOutcome.IN_FLIGHT
    assert store.complete(key.id, "r1", b'{"x": 1}') is True
    replay = store.charge(key.id, 3, request_id="r3", endpoint="texts", owner="o", **kw)
    assert replay.outcome is ChargeOutcome.REPLAY and replay.stored_response == b'{"x": 1}'
    other = {"idem_key": "i", "body_sha256": "other"}
    assert _charge(store, key.id, 3, "r4", **other) is ChargeOutcome.BODY_MISMATCH
    assert store.get_key(key.id).used == 3
    # idempotency keys are per API key
    _, key2 = store.create_key("k2", budget=10)
    assert _charge(store, key2.id, 3, "r5", **kw) is ChargeOutcome.CHARGED


def test_refunds_never_double_and_never_touch_a_delivered_answer(store: Store) -> None:
    _, key = store.create_key("k", budget=10)
    assert _charge(store, key.id, 4, "r1", idem_key="i", body_sha256="s") is ChargeOutcome.CHARGED
    assert store.refund(key.id, "r1") is True
    assert store.refund(key.id, "r1") is False
    assert store.get_key(key.id).used == 0
    assert store.lookup_idempotent(key.id, "i", "s") is None  # the key is free for the retry
    assert store.complete(key.id, "r1", b"{}") is False  # refunded: must not be delivered
    assert _charge(store, key.id, 2, "r2") is ChargeOutcome.CHARGED
    assert store.complete(key.id, "r2", b"{}") is True
    assert store.refund(key.id, "r2") is False  # delivered: stays charged
    assert store.refund(key.id, "r-unknown") is False
    assert store.get_key(key.id).used == 2
    statuses = [(e.request_id, e.status) for e in store.usage(key.id).entries]
    assert statuses == [("r2", "charged"), ("r1", "refunded")]


def test_usage_pages_newest_first_with_totals(store: Store) -> None:
    _, key = store.create_key("k", budget=100)
    for i in range(7):
        store.charge(key.id, 1 + i % 2, request_id=f"r{i}", endpoint="texts" if i % 3 else
                     "images", owner="o")  # fmt: skip
    store.refund(key.id, "r3")
    seen, cursor = [], None
    while True:
        page = store.usage(key.id, limit=3, cursor=cursor)
        seen += [e.request_id for e in page.entries]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"r{i}" for i in reversed(range(7))]
    assert page.requests == 6 and sum(page.queries_by_endpoint.values()) == page.key.used
    assert store.usage("key_nope") is None


# -- group commit ----------------------------------------------------------------------------


def test_concurrent_operations_share_transactions_each_with_its_own_outcome(store) -> None:
    _, key = store.create_key("k", budget=30)

    async def go():
        ops = [ChargeOp(key.id, 1, f"g{i}", "texts", "o") for i in range(60)]
        ops.insert(1, ChargeOp(key.id, 1, "g0", "texts", "o"))  # a duplicate request id
        return await asyncio.gather(*(store.apply(op) for op in ops), return_exceptions=True)

    results = asyncio.run(go())
    assert isinstance(results.pop(1), Exception)  # the duplicate failed, and only it
    outcomes = [r.outcome for r in results]
    assert outcomes.count(ChargeOutcome.CHARGED) == 30
    assert outcomes.count(ChargeOutcome.INSUFFICIENT) == 30
    assert store.get_key(key.id).used == 30
    assert max(store.batch_sizes) > 1  # several operations committed in one transaction

    async def finish():
        done = [CompleteOp(key.id, f"g{i}", b"{}") for i in range(0, 60, 2)]
        back = [RefundOp(key.id, f"g{i}") for i in range(1, 60, 2)]
        return await asyncio.gather(*(store.apply(op) for op in done + back))

    assert sum(asyncio.run(finish())) == 30  # 15 completions + 15 refunds of real charges
    assert store.get_key(key.id).used == 15


def test_a_lone_operation_commits_at_once(store: Store) -> None:
    _, key = store.create_key("k", budget=30)
    t0 = time.perf_counter()
    for i in range(20):
        store.charge(key.id, 1, request_id=f"l{i}", endpoint="texts", owner="o")
    per_op = (time.perf_counter() - t0) / 20
    assert per_op < 0.25, per_op  # no waiting for a batch to fill
    assert store.batch_sizes[-20:] == [1] * 20


def test_a_cancelled_charge_is_never_left_charged(store: Store) -> None:
    _, key = store.create_key("k", budget=1000)

    async def go():
        tasks = [
            asyncio.create_task(store.apply(ChargeOp(key.id, 1, f"c{i}", "texts", "o")))
            for i in range(40)
        ]
        await asyncio.sleep(0)
        for t in tasks[::2]:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return [r for r in results if not isinstance(r, BaseException)]

    kept = asyncio.run(go())
    deadline = time.monotonic() + 10  # compensating refunds are queued after the cancel
    while store.get_key(key.id).used != len(kept) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.get_key(key.id).used == len(kept) >= 20


# -- owners ----------------------------------------------------------------------------------


def test_dead_owners_charges_are_refunded_live_owners_never(store_factory) -> None:
    a, b = store_factory(), store_factory()
    _, key = a.create_key("k", budget=100)
    a.register_owner("live", "srv")
    dead = RegisterOwnerOp("dead", "srv", _dead_pid(), host_id(), None)
    a.execute(dead)
    far_fresh = RegisterOwnerOp("far-fresh", "other", 1, "elsewhere/x/y", None)
    a.execute(far_fresh)
    kw = {"idem_key": None}
    assert _charge(a, key.id, 3, "live-1", owner="live", **kw) is ChargeOutcome.CHARGED
    assert _charge(a, key.id, 4, "dead-1", owner="dead", idem_key="d", body_sha256="s") is (
        ChargeOutcome.CHARGED
    )
    assert _charge(a, key.id, 5, "far-1", owner="far-fresh") is ChargeOutcome.CHARGED
    assert _charge(a, key.id, 6, "orphan-1", owner="never-registered") is ChargeOutcome.CHARGED
    # b's heartbeat: the dead pid is reaped at once; a fresh lease elsewhere is kept; an
    # orphan younger than the lease is kept (a process may be about to register).
    assert b.heartbeat("b", "srv", lease_s=30) == 1  # charges refunded: dead-1
    assert b.lookup_idempotent(key.id, "d", "s") is None
    assert b.get_key(key.id).used == 3 + 5 + 6
    assert {o.id for o in b.owners()} == {"live", "far-fresh", "b"}
    assert b.heartbeat("b", "srv", lease_s=30) == 0  # never twice
    # Elsewhere and silent past the lease: dead. The orphan too, once older than the lease.
    time.sleep(0.3)
    assert b.heartbeat("b", "srv", lease_s=0.2) == 2  # far-1 and orphan-1
    assert {o.id for o in b.owners()} == {"live", "b"}
    assert a.complete(key.id, "live-1", b"{}") is True  # the live owner's charge was untouched
    assert a.get_key(key.id).used == 3


def test_recovery_at_start_refunds_unregistered_owners_but_keeps_the_current(store) -> None:
    _, key = store.create_key("k", budget=10)
    store.charge(key.id, 4, request_id="req_dead", endpoint="images", owner="inst_dead",
                 idem_key="k", body_sha256="s")  # fmt: skip
    store.charge(key.id, 2, request_id="req_live", endpoint="texts", owner="inst_live")
    assert store.recover_stale("inst_live") == 1
    assert store.get_key(key.id).used == 2
    assert store.recover_stale("inst_live") == 0
    assert store.lookup_idempotent(key.id, "k", "s") is None


def test_a_reaped_owner_that_still_lives_registers_again(store: Store) -> None:
    _, key = store.create_key("k", budget=10)
    store.execute(RegisterOwnerOp("paused", "srv", 1, "elsewhere/x/y", None))
    store.charge(key.id, 2, request_id="p1", endpoint="texts", owner="paused")
    time.sleep(0.2)
    assert store.recover_stale(None, lease_s=0.1) == 1  # its lease ran out: taken for dead
    assert store.complete(key.id, "p1", b"{}") is False  # so its answer is not delivered
    store.heartbeat("paused", "srv")  # it wakes up: registered again, now on this host
    assert "paused" in {o.id for o in store.owners()}
    assert store.release_owner("paused") == 0
    assert "paused" not in {o.id for o in store.owners()}


# -- schema and rate limits ------------------------------------------------------------------


def test_an_older_or_newer_schema_is_refused_with_the_command_to_run(store_factory) -> None:
    store = store_factory()
    store.execute(RegisterOwnerOp("x", "", 1, "h", None))  # make sure the schema exists
    from vendor_service.metering import migrations

    # rewrite the recorded version, as an older (or newer) database would have it
    _set_version(store, migrations.SCHEMA_VERSION + 1)
    with pytest.raises(SchemaMismatch, match="newer than this vendor-service"):
        store_factory()
    _set_version(store, 1)
    with pytest.raises(SchemaMismatch, match="db upgrade"):
        store_factory()


def _set_version(store: Store, version: int) -> None:
    from vendor_service.metering.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        conn = store._writer  # the test reaches in: no API rewrites a schema's version
        conn.execute("DELETE FROM schema_version")
        conn.execute("INSERT INTO schema_version VALUES (?, 'test', '')", (version,))
    else:
        conn = store._writer
        conn.execute("DELETE FROM schema_version")
        conn.execute("INSERT INTO schema_version (version, description) VALUES (%s, 't')",
                     (version,))  # fmt: skip


def test_the_rate_limiter_is_one_bucket_for_every_process(store_factory) -> None:
    limiters = [store_factory().rate_limiter() for _ in range(3)]
    allowed = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.0:
        for lim in limiters:
            if lim.take("key_x", 10.0, 5) == 0:
                allowed += 1
        time.sleep(0.002)
    elapsed = time.monotonic() - t0
    expected = 5 + 10.0 * elapsed
    assert abs(allowed - expected) <= 0.1 * expected + 1, (allowed, expected)
    waits = [limiters[0].take("key_x", 10.0, 5) for _ in range(3)]  # the bucket is empty
    assert any(0 < w <= 0.1 + 1e-6 for w in waits), waits
    assert limiters[1].take("key_other", 10.0, 5) == 0  # buckets are per key


def test_one_idempotency_key_sent_to_two_processes_at_once_is_charged_once(store_factory):
    a, b = store_factory(), store_factory()
    _, key = a.create_key("k", budget=1000)
    barrier = threading.Barrier(16)
    outcomes: list[ChargeOutcome] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        s = (a, b)[i % 2]
        barrier.wait()
        for j in range(5):  # five different keys, each raced by all 16 threads
            out = _charge(s, key.id, 2, f"race-{i}-{j}", idem_key=f"same-{j}", body_sha256="x")
            with lock:
                outcomes.append(out)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert outcomes.count(ChargeOutcome.CHARGED) == 5
    assert outcomes.count(ChargeOutcome.IN_FLIGHT) == 16 * 5 - 5
    assert a.get_key(key.id).used == 10
    charged = [e for e in b.usage(key.id, limit=1000).entries if e.status == "charged"]
    assert sorted(e.idempotency_key for e in charged) == [f"same-{j}" for j in range(5)]
