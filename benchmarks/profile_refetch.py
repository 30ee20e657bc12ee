"""Where does a cached rerun of ``fetch_plan`` spend its time? (row 5's profiler companion)

Fills a fresh cache for the demo plan with an in-process teacher, then runs the same plan
again under ``py-spy record`` and prints the top functions (own time and total time).

    .venv/bin/python benchmarks/profile_refetch.py
    .venv/bin/python benchmarks/profile_refetch.py --views 4 --model vl2v-demo-v3
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _common import BENCH_DIR, REPO_ROOT


def fetch_once(cache_dir: Path, model: str, target: str | None, views: int) -> None:
    """One ``fetch_plan`` of the demo plan with a local teacher; prints seconds and sends."""
    from client_distiller.commands import demo
    from client_distiller.commands.common import open_dataset
    from client_distiller.commands.options import DatasetOptions
    from client_distiller.plan import build_plan, fetch_plan
    from client_distiller.teacher import open_teacher

    dataset = open_dataset(DatasetOptions())  # --data demo, in $VL2V_DATA_DIR
    plan = build_plan(dataset, target or dataset.domains[-1], views=views)
    with open_teacher(
        cache_dir=cache_dir, local_model=model, clip_config_dirs=demo.clip_config_dirs()
    ) as teacher:
        _ = teacher.card
        t0 = time.perf_counter()
        fetch_plan(plan, teacher, progress=False)
        stats = teacher.stats()
        print(
            f"fetch_plan: {time.perf_counter() - t0:.2f} s, sent {stats.sent}, "
            f"hits {stats.cache_hits}",
            flush=True,
        )


def top_functions(raw: Path, n: int = 25) -> str:
    """Own-time and total-time leaders of a py-spy raw (collapsed) profile."""
    own, total, samples = collections.Counter(), collections.Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")[1:]  # drop the thread label
        if not any(f.startswith("fetch_plan ") for f in frames):
            continue  # imports, dataset scan: not the rerun's work
        k = int(count)
        samples += k
        own[frames[-1]] += k
        for f in set(frames):
            total[f] += k
    lines = [f"{samples} samples inside fetch_plan; own time:"]
    lines += [f"  {100 * v / samples:5.1f}%  {f}" for f, v in own.most_common(n)]
    lines += ["total time (inclusive):"]
    lines += [f"  {100 * v / samples:5.1f}%  {f}" for f, v in total.most_common(n)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Fill a cache, then profile the rerun."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model",
        default="vl2v-tiny",
        help="local teacher (cost is irrelevant here: the rerun sends nothing)",
    )
    p.add_argument("--target-domain", default=None, help="held-out domain")
    p.add_argument("--views", type=int, default=1, help="views per training image")
    p.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=BENCH_DIR / "profiles", help="output folder")
    args = p.parse_args(argv)
    if args.child is not None:  # the profiled process
        fetch_once(args.child, args.model, args.target_domain, args.views)
        return 0

    pyspy = Path(sys.executable).with_name("py-spy")
    args.out.mkdir(parents=True, exist_ok=True)
    (BENCH_DIR / "scratch").mkdir(parents=True, exist_ok=True)
    cache = Path(tempfile.mkdtemp(prefix="refetch-", dir=BENCH_DIR / "scratch"))
    base = [
        sys.executable,
        __file__,
        "--model",
        args.model,
        "--views",
        str(args.views),
        "--child",
        str(cache),
    ]
    if args.target_domain:
        base += ["--target-domain", args.target_domain]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        print("first fetch (fills the cache):", flush=True)
        subprocess.run(base, cwd=REPO_ROOT, env=env, check=True)
        raw = args.out / f"refetch-K{args.views}-{time.strftime('%H%M%S')}.txt"
        print("second fetch under py-spy:", flush=True)
        subprocess.run(
            [
                str(pyspy),
                "record",
                "--rate",
                "100",
                "--format",
                "raw",
                "--output",
                str(raw),
                "--",
                *base,
            ],
            cwd=REPO_ROOT,
            env=env,
            check=True,
        )
        print(top_functions(raw))
        print(f"profile: {raw}")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
