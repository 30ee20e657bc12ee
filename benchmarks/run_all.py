"""Run every benchmark (``make bench``) and print one summary table.

Each script runs as its own process (so one's threads, servers and memory never leak into the
next), writes ``runs/bench/<name>.json``, and this driver reads those files back:

    .venv/bin/python benchmarks/run_all.py                   # all, default sizes (~20 min)
    .venv/bin/python benchmarks/run_all.py --only vendor,fetch
    .venv/bin/python benchmarks/run_all.py --summary-only    # re-print the last results
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from _common import BENCH_DIR, REPO_ROOT, Row, print_rows

#: name -> script; the order is the table's order.
BENCHMARKS = {
    "vendor": "bench_vendor.py",
    "fetch": "bench_fetch.py",
    "train": "bench_train.py",
    "queries": "bench_queries.py",
    "memory": "bench_memory.py",
}
ROW_ORDER = [
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9a",
    "9b",
    "mem-vendor",
    "mem-client",
    "mem-demo-vendor",
    "mem-demo-client",
    "mem-demo-total",
]


def load_rows(out: Path, names: Sequence[str]) -> tuple[list[Row], dict[str, str], dict[str, str]]:
    """Rows of every result file present, in table order; each file's start time; and the
    command that produced each row."""
    rows, started, commands = [], {}, {}
    for name in names:
        path = out / f"{name}.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        started[name] = (
            f"{data['started']} ({data['seconds']} s, "
            f"load {data['machine']['loadavg']}, commit {data['machine']['commit']})"
        )
        for r in data["rows"]:
            rows.append(Row(**r))
            commands[r["id"]] = data.get("command", name)
    rank = {r: i for i, r in enumerate(ROW_ORDER)}
    rows.sort(key=lambda r: rank.get(r.id, len(rank)))
    return rows, started, commands


def markdown(rows: list[Row], commands: dict[str, str]) -> str:
    """The performance table as markdown, with the command behind each row."""
    out = ["| row | question | measured | target | result | command |", "|---|---|---|---|---|---|"]
    for r in rows:
        verdict = "-" if r.passed is None else ("pass" if r.passed else "**miss**")
        cells = [r.id, r.question, r.measured, r.target, verdict, f"`{commands.get(r.id, '')}`"]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks and print the summary; exit status 1 if a script failed."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--only", default=",".join(BENCHMARKS), help=f"comma list of {','.join(BENCHMARKS)}"
    )
    p.add_argument("--summary-only", action="store_true", help="only print the last results")
    p.add_argument(
        "--markdown",
        action="store_true",
        help="also print the summary as a markdown table with each row's command",
    )
    p.add_argument("--out", type=Path, default=BENCH_DIR, help="result folder")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")

    failed = []
    if not args.summary_only:
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        for name in names:
            script = Path(__file__).with_name(BENCHMARKS[name])
            print(f"\n=== {name}: {script.name} ===", flush=True)
            t0 = time.time()
            rc = subprocess.call(
                [sys.executable, str(script), "--out", str(args.out)], cwd=REPO_ROOT, env=env
            )
            print(f"=== {name}: exit {rc} after {time.time() - t0:.0f} s ===", flush=True)
            if rc != 0:
                failed.append(name)

    rows, started, commands = load_rows(args.out, names)
    print("\nSummary (ratios measured side by side in one run; details in runs/bench/*.json)")
    print_rows(rows)
    for name, when in started.items():
        print(f"  {name}: {when}")
    if args.markdown:
        print()
        print(markdown(rows, commands))
    misses = [r.id for r in rows if r.passed is False]
    print(
        f"\n{sum(r.passed is True for r in rows)} pass, {len(misses)} miss"
        + (f" ({', '.join(misses)})" if misses else "")
        + (f"; FAILED to run: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
