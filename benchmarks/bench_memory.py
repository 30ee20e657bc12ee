"""Peak memory of a ``make demo`` run: the vendor process, the client process, and both together.

Runs ``scripts/demo.py`` (what ``make demo`` runs) into a fresh folder and samples its process
tree from ``/proc`` every 0.25 s: each process's own high-water mark (``VmHWM``, exact) and the
largest summed RSS seen (as fine as the sampling). By default the demo trains only a few steps
per stage: the peak comes from loading models and data, not from the number of steps (compare
with ``--steps 200``, the demo's default).

    .venv/bin/python benchmarks/bench_memory.py                 # ~3 min on 2 cores
    .venv/bin/python benchmarks/bench_memory.py --steps 200     # a full `make demo`
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from _common import BENCH_DIR, REPO_ROOT, Result, Row, TreeMemorySampler


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo under the memory sampler; see the module docstring."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=20, help="demo steps per stage (demo: 200)")
    p.add_argument("--out", type=Path, default=BENCH_DIR, help="result folder")
    args = p.parse_args(argv)
    result = Result("memory")

    demo_dir = args.out / "scratch" / "demo-memory"
    shutil.rmtree(demo_dir, ignore_errors=True)  # fresh: pay, fetch and train like a first run
    cmd = [
        sys.executable,
        str(REPO_ROOT / "scripts" / "demo.py"),
        "--out",
        str(demo_dir),
        "--steps",
        str(args.steps),
    ]
    print("$ python scripts/demo.py --out " + str(demo_dir) + f" --steps {args.steps}", flush=True)
    t0 = time.time()
    log_path = args.out / "memory-demo.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        with TreeMemorySampler(proc.pid) as mem:
            rc = proc.wait()
    wall = time.time() - t0
    summary = mem.summary()
    if rc != 0:
        print(log_path.read_text()[-3000:])
        print(f"scripts/demo.py failed with exit code {rc}; see {log_path}", file=sys.stderr)
        return rc

    def peak(*words: str) -> float | None:
        hits = [x["vmhwm_mib"] for x in summary["processes"] if any(w in x["cmd"] for w in words)]
        return max(hits) if hits else None

    vendor = peak("vendor-service serve", "vendor_service.cli serve")
    # scripts/demo.py calls `client-distiller run` in process: its process is the client
    client = peak("scripts/demo.py", "client_distiller", "client-distiller")
    result.rows = [
        Row(
            "mem-demo-vendor",
            f"make demo (--steps {args.steps}): vendor peak RSS (VmHWM)",
            f"{vendor} MiB",
            "(report)",
            None,
            vendor,
        ),
        Row(
            "mem-demo-client",
            f"make demo (--steps {args.steps}): client peak RSS (VmHWM)",
            f"{client} MiB",
            "(report)",
            None,
            client,
        ),
        Row(
            "mem-demo-total",
            f"make demo (--steps {args.steps}): all processes, peak sum",
            f"{summary['peak_total_rss_mib']} MiB",
            "(report)",
            None,
            summary["peak_total_rss_mib"],
        ),
    ]
    result.details = {
        "steps": args.steps,
        "wall_seconds": round(wall, 1),
        "memory": summary,
        "log": str(log_path),
    }
    shutil.rmtree(demo_dir, ignore_errors=True)
    result.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
