"""Profile a real vendor process under load with py-spy (where does a request's time go?).

Starts ``vendor-service serve`` like ``bench_vendor.py``, runs the load generator at the given
concurrency, and records the server with ``py-spy record`` (all threads, idle frames
included), writing a speedscope JSON and py-spy's own top-functions summary.

    .venv/bin/python benchmarks/profile_vendor.py --concurrency 1 --seconds 10
    .venv/bin/python benchmarks/profile_vendor.py --concurrency 16 --format flamegraph
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _common import BENCH_DIR, choose_teacher
from bench_vendor import demo_pngs
from loadgen import image_request_bodies, run_load


def main(argv: Sequence[str] | None = None) -> int:
    """Record one load run of the vendor with py-spy."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="vl2v-demo-v3", help="served model (default vl2v-demo-v3)")
    p.add_argument("--concurrency", type=int, default=1, help="clients")
    p.add_argument("--seconds", type=float, default=10.0, help="recorded load window")
    p.add_argument("--max-batch", type=int, default=None, help="server --max-batch")
    p.add_argument("--max-wait-ms", type=float, default=None, help="server --max-wait-ms")
    p.add_argument(
        "--format",
        default="speedscope",
        choices=["speedscope", "flamegraph", "raw"],
        help="py-spy output format",
    )
    p.add_argument("--idle", action="store_true", help="include idle (waiting) frames")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "profiles", help="output folder")
    args = p.parse_args(argv)

    from vendor_service.process import start_vendor

    pyspy = Path(sys.executable).with_name("py-spy")
    if not pyspy.is_file():
        print("py-spy is not installed: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    teacher = choose_teacher(args.model, BENCH_DIR / "scratch")
    knobs = {"rate_limit_rps": 1e6, "rate_limit_burst": 10**6, **teacher.knobs()}
    if args.max_batch:
        knobs["max_batch"] = args.max_batch
    if args.max_wait_ms is not None:
        knobs["max_wait_ms"] = args.max_wait_ms
    scratch = Path(tempfile.mkdtemp(prefix="profile-", dir=BENCH_DIR))
    ext = {"speedscope": "json", "flamegraph": "svg", "raw": "txt"}[args.format]
    stem = f"vendor-c{args.concurrency}-{time.strftime('%H%M%S')}"
    try:
        with start_vendor(scratch, model=teacher.model, **knobs) as vendor:
            key = vendor.create_key(10**12, name="profile")
            import httpx

            size = httpx.get(vendor.base_url + "/v1/models").json()["data"][0]["image_size"]
            bodies = image_request_bodies(demo_pngs(64, size), 1)
            run_load(
                vendor.base_url, key, bodies, concurrency=args.concurrency, seconds=1.0, warmup=0.5
            )
            cmd = [
                str(pyspy),
                "record",
                "--pid",
                str(vendor.proc.pid),
                "--threads",
                "--duration",
                str(int(args.seconds)),
                "--rate",
                "200",
                "--format",
                args.format,
                "--output",
                str(args.out / f"{stem}.{ext}"),
            ]
            if args.idle:
                cmd.append("--idle")
            spy = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            time.sleep(1.0)
            res = run_load(
                vendor.base_url,
                key,
                bodies,
                concurrency=args.concurrency,
                seconds=args.seconds - 1.5,
                warmup=0.0,
            )
            out, _ = spy.communicate(timeout=args.seconds + 60)
            print(out.decode(errors="replace")[-2000:])
            print(res.summary())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"profile: {args.out / (stem + '.' + ext)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
