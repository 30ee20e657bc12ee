"""End to end: `client-distiller run` against a real vendor process on loopback.

Tiny sizes throughout: the vendor serves the random-weight ``vl2v-tiny``, the student is timm's
``test_resnet`` at 32 px, the data a 36-image DomainBed folder of real PNG files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client_distiller.cli import main
from client_distiller.data import DomainFolder
from client_distiller.plan import build_plan
from tests.helpers.synthetic import write_domainbed
from tests.helpers.vendor_process import REPO_ROOT, start_vendor

pytestmark = pytest.mark.slow


def _run_args(data: Path, vendor, key: str, cache: Path, out: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--data",
        str(data),
        "--target-domain",
        "flat",
        "--endpoint",
        vendor.base_url,
        "--api-key",
        key,
        "--cache-dir",
        str(cache),
        "--student",
        "test_resnet",
        "--student-size",
        "32",
        "--no-pretrained",
        "--batch-size",
        "4",
        "--out",
        str(out),
        "--no-progress",
        "--threads",
        "1",
        *extra,
    ]


def _records(out: Path) -> list[dict]:
    lines = (out / "results.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    # One vendor for the module; each test uses its own key, cache and output folder.
    tmp = tmp_path_factory.mktemp("world")
    data = write_domainbed(tmp / "data", per_class=4)
    vendor = start_vendor(tmp)
    try:
        yield data, vendor
    finally:
        vendor.stop()


def test_run_then_rerun_spends_zero_queries(world, tmp_path, capsys):
    data, vendor = world
    key = vendor.create_key(10_000)
    cache, out = tmp_path / "cache", tmp_path / "out"
    args = _run_args(
        data,
        vendor,
        key,
        cache,
        out,
        "--algorithms",
        "erm,kd,adip,zeroshot",
        "--views",
        "2",
        "--steps",
        "4",
        "--align-steps",
        "4",
    )
    assert main(args) == 0
    first = capsys.readouterr().out

    plan = build_plan(DomainFolder(data), "flat", views=2)
    expected = plan.count().total  # 20 train images x 2 views + 14 eval images + 3 texts
    used = vendor.usage(key)["budget"]["used"]
    assert used == expected == 57
    assert f"teacher queries sent by this run: {expected}" in first

    records = {r["algorithm"]: r for r in _records(out)}
    assert set(records) == {"erm", "kd", "adip", "zeroshot"}
    assert records["erm"]["queries_used"] == 0
    assert records["adip"]["queries_used"] == 20 * 2 + 3
    for r in records.values():
        assert 0.0 <= r["ood_acc"] <= 1.0 and set(r["per_domain"]) == {"flat", "noisy", "outline"}
    assert "| adip |" in first and (out / "accuracy_per_domain.png").stat().st_size > 1000
    assert (out / "accuracy_vs_queries.png").is_file() and (out / "tables.md").is_file()

    # Second run: everything from the cache and the finished checkpoints.
    assert main(args) == 0
    second = capsys.readouterr().out
    assert "teacher queries sent by this run: 0" in second
    assert vendor.usage(key)["budget"]["used"] == used
    rerun = {r["algorithm"]: r for r in _records(out)[4:]}
    assert rerun["adip"]["reused_stages"] == ["align", "distill"]
    for name in records:  # same checkpoints, same data: same numbers
        assert rerun[name]["per_domain"] == records[name]["per_domain"]

    # The checkpoint alone classifies images and evaluates a dataset: no teacher involved
    # (predict/evaluate take no endpoint; the vendor's count stays put).
    ckpt = records["adip"]["checkpoint"]
    image = next((data / "noisy" / "square").glob("*.png"))
    assert main(["predict", "--checkpoint", ckpt, str(image), "--top-k", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(image)) and len(line.split("\t")[1].split(", ")) == 2
    assert main(["evaluate", "--checkpoint", ckpt, "--data", str(data)]) == 0
    table = capsys.readouterr().out
    assert all(d in table for d in ("flat", "noisy", "outline"))
    assert vendor.usage(key)["budget"]["used"] == used


def test_sigkilled_run_resumes_without_paying_twice(world, tmp_path):
    data, vendor = world
    key = vendor.create_key(10_000)
    cache, out = tmp_path / "cache", tmp_path / "out"
    args = _run_args(
        data,
        vendor,
        key,
        cache,
        out,
        "--algorithms",
        "adip",
        "--views",
        "1",
        "--steps",
        "100",
        "--align-steps",
        "5",
        "--checkpoint-every",
        "5",
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "client_distiller.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        resume = None
        while time.monotonic() < deadline and resume is None:
            found = [
                p
                for p in out.glob("checkpoints/*/*/resume.pt")
                if (p.parent / "align.pt").is_file()
            ]
            resume = found[0] if found else None
            time.sleep(0.05)
        assert resume is not None, "distill never wrote a resume checkpoint"
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert not (resume.parent / "distill.pt").exists()
    paid = vendor.usage(key)["budget"]["used"]
    # Everything adip reads was paid before training: the views and texts (no zero-shot
    # reference was asked for, so no evaluation images).
    assert paid == build_plan(DomainFolder(data), "flat", views=1, zeroshot=False).count().total

    assert main(args) == 0
    (record,) = _records(out)
    assert record["reused_stages"] == ["align"]
    assert record["resumed_from"]["distill"] >= 5
    assert vendor.usage(key)["budget"]["used"] == paid  # nothing paid twice
