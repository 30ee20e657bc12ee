"""The ledger's cost per request on each store, and what group commit buys.

One metered request costs the ledger a charge and a completion. This measures, on SQLite (WAL,
``synchronous = FULL``) and on a real PostgreSQL (started here, ``tests/helpers/postgres.py``),
side by side in one run:

- one client (charge, then complete, one at a time): latency per request;
- C concurrent clients on the event loop (``await store.apply(op)``): requests per second,
  server-side CPU per request, and the batch sizes the writer formed;
- the same C clients each committing its own transactions (``max_batch=1``: the store without
  group commit), for the ratio.

    .venv/bin/python benchmarks/bench_store.py [--clients 16] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import BENCH_DIR, Result, Row

from vendor_service.metering import ChargeOp, CompleteOp, SQLiteStore, Store
from vendor_service.metering.groupcommit import GroupCommitter


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _postgres_cpu(server: Any) -> float:
    """CPU seconds of the PostgreSQL server's processes (postmaster and backends)."""
    import os

    hz = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pid = int((server.root / "data" / "postmaster.pid").read_text().split()[0])
    from _common import process_tree

    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / hz
        except (OSError, IndexError, ValueError):
            pass
    return total


def _one_client(store: Store, key_id: str, n: int) -> float:
    """Median ms of charge + complete, one request at a time."""
    times = []
    for i in range(n):
        rid = f"one-{i}-{time.time_ns()}"
        t0 = time.perf_counter()
        store.charge(key_id, 1, request_id=rid, endpoint="texts", owner="b")
        store.complete(key_id, rid, b'{"data": []}')
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


async def _clients(store: Store, key_id: str, clients: int, seconds: float) -> int:
    stop = time.perf_counter() + seconds
    done = 0

    async def client(c: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < stop:
            rid = f"c{c}-{i}-{time.time_ns()}"
            await store.apply(ChargeOp(key_id, 1, rid, "texts", "b"))
            await store.apply(CompleteOp(key_id, rid, b'{"data": []}'))
            done += 1
            i += 1

    await asyncio.gather(*(client(c) for c in range(clients)))
    return done


def measure(
    name: str, store: Store, clients: int, seconds: float, pg: Any = None
) -> dict[str, Any]:
    _, key = store.create_key("bench", 10**12)
    one_ms = _one_client(store, key.id, 50)
    committer: GroupCommitter = store._committer  # type: ignore[attr-defined]
    out: dict[str, Any] = {"store": name, "one_client_ms_per_request": round(one_ms, 3)}
    for label, max_batch in (("group_commit", 256), ("no_group_commit", 1)):
        committer._max_batch = max_batch  # the same writer, one op per transaction
        committer.batch_sizes.clear()
        cpu0, pg0 = _cpu(), _postgres_cpu(pg) if pg else 0.0
        t0 = time.perf_counter()
        done = asyncio.run(_clients(store, key.id, clients, seconds))
        wall = time.perf_counter() - t0
        cpu = _cpu() - cpu0 + ((_postgres_cpu(pg) - pg0) if pg else 0.0)
        sizes = committer.batch_sizes
        out[label] = {
            "requests_per_s": round(done / wall, 1),
            "cpu_ms_per_request": round(cpu / done * 1000, 3),
            "transactions": len(sizes),
            "mean_batch_ops": round(statistics.mean(sizes), 2) if sizes else 0,
            "batch_size_counts": dict(sorted(Counter(min(s, 64) for s in sizes).items())[:12]),
        }
    committer._max_batch = 256
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=BENCH_DIR)
    args = parser.parse_args(argv)

    from tests.helpers.postgres import BIN, start_server

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "ledger.sqlite3")
        results.append(measure("sqlite", store, args.clients, args.seconds))
        store.close()
    if BIN is not None:
        from vendor_service.metering.postgres import PostgresStore

        server = start_server()
        try:
            store = PostgresStore(server.create_database())
            results.append(measure("postgres", store, args.clients, args.seconds, pg=server))
            store.close()
        finally:
            server.stop()
    result = Result("bench_store", details={"clients": args.clients, "results": results})
    for r in results:
        g, n = r["group_commit"], r["no_group_commit"]
        result.rows.append(
            Row(
                f"store-{r['store']}",
                f"{r['store']}: ledger cost of one request (charge + complete), {args.clients} "
                "clients, group commit vs one transaction per op",
                f"{g['requests_per_s']:.0f} req/s at {g['cpu_ms_per_request']:.2f} CPU-ms "
                f"(mean batch {g['mean_batch_ops']}); {g['requests_per_s'] / n['requests_per_s']:.2f}x "
                f"the ungrouped {n['requests_per_s']:.0f} req/s; 1 client "
                f"{r['one_client_ms_per_request']:.2f} ms",
                "(report)",
                None,
                g["requests_per_s"] / n["requests_per_s"],
            )
        )
    result.write(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
