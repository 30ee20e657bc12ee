"""The vendor's per-request path, this tree against another one, side by side in one run.

Two real ``vendor-service serve`` processes (1 worker each, the same model and settings): this
working tree's and one started from ``--old`` (a git worktree, e.g. ``git worktree add
/tmp/hop-old <commit>``). Alternating rounds of the same closed-loop load (``loadgen.py``)
against each: 16 one-image clients, one client with one image, and 4 clients sending 32-image
requests. Per round: images/s, p50 latency and the server's CPU per request (user + system
time of the server's processes, from /proc, over the requests completed in the window). The
ratio new / old of each figure's median over the rounds is printed with the load average, since
the two cores are shared.

    .venv/bin/python benchmarks/bench_hot_path.py --old /tmp/hop-old --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from loadgen import image_request_bodies, run_load

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vendor_service.process import VendorProcess, start_vendor

TICK = os.sysconf("SC_CLK_TCK")


def _pngs(n: int, size: int) -> list[bytes]:
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def _tree_cpu_s(pid: int) -> float:
    """User + system seconds of ``pid`` and its descendants (live ones)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(c) for c in children)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def _round(
    vendor: VendorProcess, key: str, bodies: list[bytes], clients: int, items: int, seconds: float
) -> dict[str, float]:
    assert vendor.proc is not None
    cpu0 = _tree_cpu_s(vendor.proc.pid)
    r = run_load(
        vendor.base_url, key, bodies, concurrency=clients, seconds=seconds, warmup=1.0,
        items_per_request=items,
    )  # fmt: skip
    # The CPU includes the warm-up second; so do the requests counted for it.
    cpu = _tree_cpu_s(vendor.proc.pid) - cpu0
    requests = max(1, r.total_ok)
    if r.errors:
        raise SystemExit(f"errors during the load: {r.errors}")
    return {
        "img_s": r.ok * items / r.seconds,
        "p50_ms": statistics.median(r.latencies_ms),
        "cpu_ms_per_request": 1000 * cpu / requests,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the side-by-side rounds and print the ratios."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", type=Path, required=True, help="worktree of the code to compare")
    p.add_argument("--model", default="vl2v-tiny", help="served model (random weights)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0, help="measured window per load")
    args = p.parse_args(argv)

    pngs = _pngs(64, 64)
    loads = {
        "c16 x 1 image": (16, 1, image_request_bodies(pngs, 1)),
        "c1 x 1 image": (1, 1, image_request_bodies(pngs, 1)),
        "c4 x 32 images": (4, 32, image_request_bodies(pngs, 32)),
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench-hot-path-"))
    budget = 10**9
    knobs = {"rate_limit_rps": 1e6, "rate_limit_burst": 10**6}
    servers = {
        "new": start_vendor(tmp / "new", model=args.model, cwd=REPO, **knobs),
        "old": start_vendor(
            tmp / "old", model=args.model, cwd=args.old,
            extra_env={"PYTHONPATH": str(args.old)}, **knobs,
        ),
    }  # fmt: skip
    try:
        keys = {name: v.create_key(budget) for name, v in servers.items()}
        results: dict[str, dict[str, list[dict[str, float]]]] = {
            load: {"new": [], "old": []} for load in loads
        }
        for i in range(args.rounds):
            for load, (clients, items, bodies) in loads.items():
                # alternate which server goes first, so neither always runs on a warmer machine
                order = ["new", "old"] if i % 2 == 0 else ["old", "new"]
                for name in order:
                    results[load][name].append(
                        _round(servers[name], keys[name], bodies, clients, items, args.seconds)
                    )
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{'load':<16} {'figure':<20} {'old':>9} {'new':>9} {'new/old':>8}")
        for load, by_server in results.items():
            for figure in ("img_s", "p50_ms", "cpu_ms_per_request"):
                old = statistics.median(r[figure] for r in by_server["old"])
                new = statistics.median(r[figure] for r in by_server["new"])
                print(f"{load:<16} {figure:<20} {old:>9.2f} {new:>9.2f} {new / old:>8.2f}")
    finally:
        for v in servers.values():
            v.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
