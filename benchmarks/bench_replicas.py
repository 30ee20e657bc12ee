"""Throughput with 1, 2 and 3 vendor replicas on PostgreSQL against one vendor on SQLite.

Same load, same run: ``--clients`` closed-loop clients (one keep-alive connection each, one
one-text request in flight each) spread evenly over the replicas, for ``--seconds`` after a
warm-up. Every configuration serves the same model (``vl2v-tiny``) with one worker per replica.
On a 2-core machine the replicas compete for the same CPUs with each other, with PostgreSQL and
with the load generator, so the figure that carries over is **requests per CPU-second** (the
CPU of the vendor processes and of PostgreSQL's, measured from /proc over the window), next to
raw requests/s. The ledger's own cost per request on each store is ``bench_store.py``'s.

    .venv/bin/python benchmarks/bench_replicas.py [--clients 16] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import BENCH_DIR, Result, Row, process_tree
from loadgen import LoadResult, _run

from vendor_service.process import VendorProcess, start_vendor

HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids`` and their descendants."""
    total = 0.0
    for root in pids:
        for p in process_tree(root):
            try:
                with open(f"/proc/{p}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / HZ
            except (OSError, IndexError, ValueError):
                pass
    return total


def text_bodies(n: int = 64) -> list[bytes]:
    import json

    return [json.dumps({"texts": [f"a sketch of a red boat {i}"]}).encode() for i in range(n)]


async def _spread(urls: list[str], key: str, clients: int, seconds: float) -> list[LoadResult]:
    per = [clients // len(urls) + (i < clients % len(urls)) for i in range(len(urls))]
    return list(
        await asyncio.gather(
            *(
                _run(url, key, text_bodies(), c, seconds, 1.5, 1, "/v1/embeddings/texts")
                for url, c in zip(urls, per, strict=True)
                if c
            )
        )
    )


def measure(
    label: str, replicas: list[VendorProcess], extra_pids: list[int], clients: int, seconds: float
) -> dict[str, Any]:
    created = replicas[0]._call(
        "/v1/admin/keys",
        replicas[0].admin_token,
        {"name": "bench", "budget": 10**9, "rate_limit_rps": 1e6, "rate_limit_burst": 10**6},
    )
    key = created["key"]
    pids = [r.proc.pid for r in replicas if r.proc] + extra_pids
    cpu0 = cpu_seconds(pids)
    results = asyncio.run(_spread([r.base_url for r in replicas], key, clients, seconds))
    cpu = cpu_seconds(pids) - cpu0
    ok = sum(r.ok for r in results)
    total = sum(r.total_ok for r in results)
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r.errors.items():
            errors[k] = errors.get(k, 0) + v
    return {
        "config": label,
        "replicas": len(replicas),
        "requests_per_s": round(ok / seconds, 1),
        "cpu_s": round(cpu, 2),
        "requests_per_cpu_s": round(total / cpu, 1) if cpu else None,
        "errors": errors,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--out", type=Path, default=BENCH_DIR)
    args = parser.parse_args(argv)

    from tests.helpers.postgres import start_server

    rows: list[dict[str, Any]] = []
    server = start_server()
    pg_pid = int((server.root / "data" / "postmaster.pid").read_text().split()[0])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            knobs: dict[str, Any] = {"log_level": "warning"}
            vendor = start_vendor(Path(tmp) / "sqlite", **knobs)
            try:
                rows.append(measure("sqlite x1", [vendor], [], args.clients, args.seconds))
            finally:
                vendor.stop()
            url = server.create_database()
            replicas: list[VendorProcess] = []
            try:
                for n in (1, 2, 3):
                    while len(replicas) < n:
                        i = len(replicas)
                        replicas.append(
                            start_vendor(Path(tmp) / f"pg-{i}", database_url=url, **knobs)
                        )
                    rows.append(
                        measure(f"postgres x{n}", replicas, [pg_pid], args.clients, args.seconds)
                    )
            finally:
                for r in replicas:
                    r.stop()
    finally:
        server.stop()
    base = rows[0]
    result = Result("bench_replicas", details={"clients": args.clients, "rows": rows})
    for r in rows:
        result.rows.append(
            Row(
                f"replicas-{r['config'].replace(' ', '')}",
                f"{r['config']}: {args.clients} one-text clients over {r['replicas']} replica(s)",
                f"{r['requests_per_s']:.0f} req/s ({r['requests_per_s'] / base['requests_per_s']:.2f}x"
                f" sqlite x1); {r['requests_per_cpu_s']} req/CPU-s "
                f"({r['requests_per_cpu_s'] / base['requests_per_cpu_s']:.2f}x)",
                "(report)",
                None,
                r["requests_per_s"] / base["requests_per_s"],
            )
        )
    result.write(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
