"""SIGKILL the client mid-fetch and mid-training; the rerun pays for nothing twice and training
resumes from its last checkpoint.

The client runs as real ``client-distiller`` subprocesses against the session's real vendor;
what was paid is read from the vendor (``/v1/usage``), never from the client's own bookkeeping.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from client_distiller.cli import main
from client_distiller.data import DomainFolder
from client_distiller.plan import build_plan
from tests.helpers.plan_items import cached_count, distinct_items
from tests.helpers.vendor_process import REPO_ROOT, VendorProcess
from tests.reliability.conftest import (
    LEVELS,
    Level,
    all_usage_entries,
    ensure_running,
    new_key,
    write_figures,
)

pytestmark = pytest.mark.slow
TARGET = "paint"


def write_dataset(root: Path, *, per_class: int, size: int = 24, seed: int = 0) -> Path:
    """``root/<domain>/<class>/<i>.png``: 3 domains x 3 classes of small real PNG files."""
    rng = np.random.default_rng(seed)
    for d, domain in enumerate(("photo", "cartoon", TARGET)):
        for c, cls in enumerate(("ball", "box", "wedge")):
            folder = root / domain / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                bg = tuple(int(v) for v in rng.integers(0, 256, 3))
                img = Image.new("RGB", (size, size), bg)
                draw = ImageDraw.Draw(img)
                x, y = (int(v) for v in rng.integers(0, size // 2, 2))
                fill = tuple(int(v) for v in rng.integers(0, 256, 3))
                shape = (draw.ellipse, draw.rectangle, draw.pieslice)[c]
                extra = {"start": 0, "end": 200} if c == 2 else {}
                shape((x, y, x + size // 2, y + size // 2), fill=fill, **extra)
                if d == 2:  # a different style for the held-out domain
                    img = img.convert("L").convert("RGB")
                img.save(folder / f"{i:03d}.png")
    return root


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "client_distiller.cli", *args]


def _used(vendor: VendorProcess, key: str) -> int:
    resp = httpx.get(
        vendor.base_url + "/v1/usage", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    resp.raise_for_status()
    return resp.json()["budget"]["used"]


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


@pytest.mark.parametrize("level", LEVELS)
def test_killed_fetch_reruns_without_paying_twice(
    rel_vendor: VendorProcess, level: Level, tmp_path: Path
) -> None:
    ensure_running(rel_vendor)
    data = write_dataset(tmp_path / "data", per_class=8)
    # The key's rate limit paces the fetch (one 16-item request at a time, at most 8 a second
    # per worker): the test's own condition, so how far a fetch gets between the test seeing a
    # count and the kill landing is bounded whatever the machine's load.
    key, _ = new_key(
        rel_vendor, 100_000, f"fetch-{level.name}", rate_limit_rps=8, rate_limit_burst=1
    )
    cache, views = tmp_path / "cache", 8
    distinct = distinct_items(rel_vendor.base_url, data, TARGET, views)
    args = _cli(
        "fetch",
        "--data",
        str(data),
        "--target-domain",
        TARGET,
        "--views",
        str(views),
        "--endpoint",
        rel_vendor.base_url,
        "--api-key",
        key,
        "--cache-dir",
        str(cache),
        "--concurrency",
        "1",
        "--no-progress",
    )

    kills = []
    for i in range(level.client_kills):
        before = _used(rel_vendor, key)
        # Where the kill lands is the test's choice, in charged items, not in wall time: the
        # i-th kill waits for the vendor to have charged (i + 1) / (kills + 1) of the plan, and
        # at least two more 16-item requests of this run. That leaves a quarter of the plan or
        # more unpaid, more than the paced fetch can charge before the kill lands, so it lands
        # mid-fetch on a fast idle machine and a loaded one alike.
        target = max(before + 32, (i + 1) * len(distinct) // (level.client_kills + 1))
        assert target + 48 < len(distinct), (target, len(distinct), kills)
        proc = subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 180
            while _used(rel_vendor, key) < target:
                assert proc.poll() is None, f"fetch ended (rc {proc.returncode}) before the kill"
                assert time.monotonic() < deadline, "fetch made no progress"
                time.sleep(0.01)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        finally:
            _kill_group(proc)
        assert proc.returncode == -signal.SIGKILL
        kills.append(
            {
                "target": target,
                "charged": _used(rel_vendor, key),
                "cached": cached_count(cache, distinct),
            }
        )
    # Killed mid-fetch each time. The kill may land between the vendor's charge and the
    # client's cache write: those answers are lost to the client, and the rerun must get them
    # back without paying (same chunk, same Idempotency-Key -> replay).
    assert all(0 < k["charged"] < len(distinct) for k in kills), kills

    assert main(args[3:]) == 0  # the rerun, in process (saves a torch import)
    charged = _used(rel_vendor, key)
    _, entries = all_usage_entries(rel_vendor, key)
    paid = [e for e in entries if e["status"] == "charged"]
    idem = Counter(e["idempotency_key"] for e in paid)
    figures = {
        "items": len(distinct),
        "kills": len(kills),
        "at_kills": kills,
        "charged": charged,
        "cached": cached_count(cache, distinct),
        "requests": len(entries),
        "double_charged_chunks": sum(v > 1 for v in idem.values()),
    }
    write_figures("client-fetch-kill", level, figures)
    assert charged == len(distinct) == figures["cached"]  # every distinct item paid exactly once
    assert sum(e["queries"] for e in paid) == charged
    assert figures["double_charged_chunks"] == 0 and None not in idem


def _resume_step(out: Path) -> tuple[Path, int, str]:
    (path,) = list(out.glob("checkpoints/**/resume.pt"))
    saved = torch.load(path, map_location="cpu", weights_only=True)
    return path, int(saved["step"]), str(saved["stage"])


def _records(out: Path) -> list[dict]:
    text = (out / "results.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("level", LEVELS)
def test_killed_training_resumes_from_its_checkpoint(
    rel_vendor: VendorProcess, level: Level, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ensure_running(rel_vendor)
    data = write_dataset(tmp_path / "data", per_class=4)
    key, _ = new_key(
        rel_vendor, 100_000, f"train-{level.name}", rate_limit_rps=1000, rate_limit_burst=1000
    )
    cache, out = tmp_path / "cache", tmp_path / "out"
    args = _cli(
        "run",
        "--data",
        str(data),
        "--target-domain",
        TARGET,
        "--endpoint",
        rel_vendor.base_url,
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
        "--algorithms",
        "adip",
        "--views",
        "1",
        "--steps",
        "400",
        "--align-steps",
        "5",
        "--checkpoint-every",
        "5",
    )
    # What adip reads: views and class texts (no zero-shot reference, no evaluation images).
    expected_queries = build_plan(DomainFolder(data), TARGET, views=1, zeroshot=False).count().total

    steps: list[int] = []
    paid_at_kill: list[int] = []
    for _ in range(level.train_kills):
        proc = subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 300
            last = steps[-1] if steps else 0
            # Wait for a distill-stage checkpoint past the one this run resumed from.
            while True:
                assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
                assert time.monotonic() < deadline, "no new resume checkpoint"
                found = list(out.glob("checkpoints/**/resume.pt"))
                if found and (found[0].parent / "align.pt").is_file():
                    try:
                        _, step, stage = _resume_step(out)
                    except Exception:  # noqa: BLE001 - replaced while loading: look again
                        step, stage = 0, ""
                    if stage == "distill" and step >= last + 10:
                        break
                time.sleep(0.05)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        finally:
            _kill_group(proc)
            proc.stderr.close()
        path, step, stage = _resume_step(out)  # what the killed run left on disk
        assert stage == "distill" and not (path.parent / "distill.pt").exists()
        steps.append(step)
        paid_at_kill.append(_used(rel_vendor, key))
    assert paid_at_kill[0] == expected_queries  # everything was fetched before training

    capsys.readouterr()
    threads = torch.get_num_threads()
    try:
        assert main(args[3:]) == 0  # the rerun, in process (saves a torch import)
    finally:
        torch.set_num_threads(threads)  # `run --threads 1` must not leak into later tests
    stdout = capsys.readouterr().out
    (record,) = _records(out)
    figures = {
        "kills": len(steps),
        "resume_steps": steps,
        "resumed_from": record["resumed_from"],
        "reused_stages": record["reused_stages"],
        "charged_before": paid_at_kill[0],
        "charged_after": _used(rel_vendor, key),
    }
    write_figures("client-train-kill", level, figures)
    assert record["reused_stages"] == ["align"]
    assert record["resumed_from"]["distill"] == steps[-1] > 0  # from its last checkpoint
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert "teacher queries sent by this run: 0" in stdout
    assert figures["charged_after"] == paid_at_kill[0]  # no new queries paid after the kills
