"""Smoke tests of the benchmark scripts at a tiny size (not part of `make test`).

.venv/bin/python -m pytest benchmarks -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _common import Row, TreeMemorySampler, percentile, print_rows

BENCH = Path(__file__).parent


def test_percentile_interpolates():
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    assert percentile([3.0, 1.0, 2.0], 0) == 1.0
    assert percentile([3.0, 1.0, 2.0], 100) == 3.0


def test_print_rows_marks_pass_miss_and_report(capsys):
    print_rows(
        [
            Row("1", "q", "0.9", ">= 0.85", True),
            Row("2", "q", "1x", ">= 3x", False),
            Row("mem", "q", "1 MiB", "(report)", None),
        ]
    )
    out = capsys.readouterr().out.splitlines()
    assert out[2].rstrip().endswith("pass")
    assert out[3].rstrip().endswith("MISS")
    assert out[4].rstrip().endswith("-")


def test_memory_sampler_sees_a_child_allocate():
    code = "b = bytearray(200 * 2**20); import time; time.sleep(1.0)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    with TreeMemorySampler(proc.pid, interval=0.05) as mem:
        proc.wait()
        time.sleep(0.1)
    peak = max(p["vmhwm_mib"] for p in mem.summary()["processes"])
    assert peak >= 200


@pytest.mark.timeout(300)
def test_bench_vendor_tiny_run_writes_all_rows(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [
            sys.executable,
            str(BENCH / "bench_vendor.py"),
            "--model",
            "vl2v-tiny",
            "--seconds",
            "1",
            "--warmup",
            "0.3",
            "--concurrency",
            "1,4",
            "--batch-sizes",
            "1,4",
            "--bare-seconds",
            "0.2",
            "--rounds",
            "1",
            "--out",
            str(tmp_path),
        ],
        check=True,
        env=env,
        timeout=280,
    )
    data = json.loads((tmp_path / "vendor.json").read_text())
    rows = {r["id"]: r for r in data["rows"]}
    assert set(rows) == {"1", "2", "3", "9a", "mem-vendor"}
    assert rows["1"]["value"] > 0 and rows["2"]["value"] > 0
    assert rows["mem-vendor"]["value"] > 50  # a real process with torch loaded
    for point in data["details"]["batching_on"].values():
        assert point["requests_ok"] > 0 and not point["errors"]
