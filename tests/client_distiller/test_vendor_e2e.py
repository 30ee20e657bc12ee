"""The client against a real vendor process on loopback (tiny random-weight model).

One vendor serves the module (it takes seconds to start); every test has its own key and its
own cache directory. The vendor cuts requests at 8 items and sleeps 100 ms per batch, so a
fetch takes long enough to be killed halfway.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from client_distiller.cli import main
from tests.client_distiller.conftest import make_dataset
from tests.helpers.plan_items import cached_count, distinct_items
from tests.helpers.vendor_process import VendorProcess, start_vendor

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
CHUNK = 8


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("vendor")
    v = start_vendor(root, max_items_per_request=CHUNK, debug_delay_ms=100)
    yield v
    v.stop()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "d")


def _args(vendor: VendorProcess, key: str, data: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "--data",
        str(data),
        "--target-domain",
        "sketch",
        "--endpoint",
        vendor.base_url,
        "--api-key",
        key,
        "--cache-dir",
        str(cache),
        *extra,
    ]


def _ledger_sum(cache: Path, column: str, run: str | None = None) -> int:
    path = cache / "ledger.sqlite"
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        if run is None:
            return int(db.execute(f"SELECT COALESCE(SUM({column}),0) FROM events").fetchone()[0])
        rows = db.execute(
            f"SELECT run_id, SUM({column}) FROM events GROUP BY run_id ORDER BY MIN(id)"
        ).fetchall()
        return int(rows[-1][1]) if run == "last" else int(rows[0][1])
    except sqlite3.OperationalError:  # table not created yet
        return 0
    finally:
        db.close()


def _charged_entries(vendor: VendorProcess, key: str) -> list[dict]:
    entries, cursor = [], None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = vendor.usage(key, **params)
        entries += [e for e in page["entries"] if e["status"] == "charged"]
        cursor = page["next_cursor"]
        if not cursor:
            return entries


def test_estimate_fetch_refetch_report(vendor, data, tmp_path, capsys) -> None:
    key = vendor.create_key(1000)
    cache = tmp_path / "cache"
    distinct = distinct_items(vendor.base_url, data, "sketch", 2)
    assert len(distinct) == 20 * 2 + 14 + 3  # 20 train x K=2, 4 val + 10 test, 3 classes

    assert main(["estimate", *_args(vendor, key, data, cache, "--views", "2")]) == 0
    out = capsys.readouterr().out
    assert f"image queries to send: {len(distinct) - 3}, text queries to send: 3" in out
    assert "vendor budget remaining for this key: 1000 (enough)" in out
    assert vendor.usage(key)["budget"]["used"] == 0  # estimate spends nothing

    assert main(["fetch", *_args(vendor, key, data, cache, "--views", "2")]) == 0
    used = vendor.usage(key)["budget"]["used"]
    assert used == len(distinct) == cached_count(cache, distinct)

    assert main(["fetch", *_args(vendor, key, data, cache, "--views", "2")]) == 0
    assert vendor.usage(key)["budget"]["used"] == used  # second fetch: zero queries sent
    assert _ledger_sum(cache, "sent", "last") == 0
    assert _ledger_sum(cache, "cache_hits", "last") == len(distinct)

    capsys.readouterr()
    assert main(["estimate", *_args(vendor, key, data, cache, "--views", "2")]) == 0
    assert "image queries to send: 0, text queries to send: 0" in capsys.readouterr().out
    assert main(["report", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert f"vendor-reported remaining budget: {1000 - used}" in out
    assert (cache / "spend.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_killed_fetch_resumes_without_paying_twice(vendor, data, tmp_path) -> None:
    key = vendor.create_key(10_000)
    cache = tmp_path / "cache"
    views = 8
    distinct = distinct_items(vendor.base_url, data, "sketch", views)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "client_distiller.cli", "fetch",
         *_args(vendor, key, data, cache, "--views", str(views), "--concurrency", "2",
                "--no-progress")],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while _ledger_sum(cache, "sent") < 3 * CHUNK:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    cached_before = cached_count(cache, distinct)
    charged_before = vendor.usage(key)["budget"]["used"]
    assert 0 < cached_before < len(distinct)  # killed halfway, kept what it stored

    assert (
        main(["fetch", *_args(vendor, key, data, cache, "--views", str(views), "--no-progress")])
        == 0
    )
    usage = vendor.usage(key)
    assert usage["budget"]["used"] == len(distinct)  # each distinct item paid exactly once
    assert cached_count(cache, distinct) == len(distinct)
    entries = _charged_entries(vendor, key)
    assert sum(e["queries"] for e in entries) == len(distinct)
    keys = Counter(e["idempotency_key"] for e in entries)
    assert max(keys.values()) == 1  # no chunk charged twice
    # Chunks charged before the kill but never stored were resent and replayed for free.
    assert _ledger_sum(cache, "charged", "last") == len(distinct) - charged_before
    print(
        f"\nKILL-RESUME items={len(distinct)} cached_at_kill={cached_before} "
        f"charged_at_kill={charged_before} rerun_sent={_ledger_sum(cache, 'sent', 'last')} "
        f"rerun_charged={_ledger_sum(cache, 'charged', 'last')} "
        f"rerun_cache_hits={_ledger_sum(cache, 'cache_hits', 'last')} "
        f"charged_total={usage['budget']['used']}"
    )


def test_max_queries_is_never_exceeded(vendor, data, tmp_path, capsys) -> None:
    key = vendor.create_key(1000)
    cache = tmp_path / "cache"
    distinct = distinct_items(vendor.base_url, data, "sketch", 2)
    assert (
        main(["fetch", *_args(vendor, key, data, cache, "--views", "2", "--max-queries", "20")])
        == 4
    )
    assert "--max-queries 20 reached" in capsys.readouterr().err
    assert vendor.usage(key)["budget"]["used"] == 20 == cached_count(cache, distinct)
    # A second capped run buys the next 20, not the same ones again.
    assert (
        main(["fetch", *_args(vendor, key, data, cache, "--views", "2", "--max-queries", "20")])
        == 4
    )
    assert vendor.usage(key)["budget"]["used"] == 40 == cached_count(cache, distinct)
    assert main(["fetch", *_args(vendor, key, data, cache, "--views", "2")]) == 0
    assert vendor.usage(key)["budget"]["used"] == len(distinct)


def test_budget_smaller_than_plan_stops_cleanly(vendor, data, tmp_path, capsys) -> None:
    key = vendor.create_key(30)
    cache = tmp_path / "cache"
    distinct = distinct_items(vendor.base_url, data, "sketch", 2)
    assert main(["fetch", *_args(vendor, key, data, cache, "--views", "2")]) == 3
    err = capsys.readouterr().err
    assert "budget exhausted" in err and "Traceback" not in err
    used = vendor.usage(key)["budget"]["used"]
    assert used == 30  # after the 402, smaller requests spend the budget left exactly
    # The figures are the budget as it is now, not the first refused request's.
    assert "0 queries remain" in err and "vendor budget remaining 0" in err
    assert "Top up the key" in err and "rerun the same command" in err
    assert cached_count(cache, distinct) == used  # everything paid for is cached
    key_id = vendor.usage(key)["key_id"]
    httpx.post(
        f"{vendor.base_url}/v1/admin/keys/{key_id}/topup",
        json={"queries": 1000},
        headers=vendor.admin_headers(),
        timeout=10,
    ).raise_for_status()
    assert main(["fetch", *_args(vendor, key, data, cache, "--views", "2")]) == 0
    assert vendor.usage(key)["budget"]["used"] == len(distinct)


def test_bad_key_is_a_clear_error(vendor, data, tmp_path, capsys) -> None:
    assert main(["fetch", *_args(vendor, "vk_wrong", data, tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert "error: HTTP 401" in err and "Traceback" not in err


def test_local_teacher_matches_the_vendor_bit_for_bit(vendor, tmp_path) -> None:
    """Same weights (seeded random tiny model) and same bytes sent: same fingerprint, same
    embeddings, so a cache filled by one teacher serves the other."""
    import numpy as np
    from PIL import Image

    from client_distiller.teacher import LocalTeacher, RemoteTeacher

    key = vendor.create_key(100)
    client = httpx.Client(base_url=vendor.base_url, headers={"Authorization": f"Bearer {key}"})
    remote = RemoteTeacher(client=client)
    local = LocalTeacher(model=vendor.model)
    assert remote.card.fingerprint == local.card.fingerprint
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)) for _ in range(3)]
    assert np.array_equal(remote.embed_images(images), local.embed_images(images))
    texts = ["a photo of a fish", "a sketch of a tree"]
    assert np.array_equal(remote.embed_texts(texts), local.embed_texts(texts))
    client.close()


def test_run_out_of_budget_says_what_is_left_and_how_to_go_on(vendor, data, tmp_path, capsys):
    key = vendor.create_key(20)
    argv = ["run", *_args(vendor, key, data, tmp_path / "cache"), "--algorithms", "kd",
            "--views", "1", "--student", "test_resnet", "--student-size", "32",
            "--no-pretrained", "--steps", "1", "--align-steps", "1", "--batch-size", "2",
            "--threads", "1", "--no-progress", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "vendor budget exhausted for this key: 0 queries remain" in err
    assert "Top up the key" in err and "nothing already paid is paid again" in err
    assert vendor.usage(key)["budget"]["used"] == 20


def test_the_openai_route_shares_the_native_cache(vendor, data, tmp_path, capsys) -> None:
    key = vendor.create_key(10_000)
    cache = tmp_path / "cache"
    native = _args(vendor, key, data, cache, "--views", "1", "--no-progress")
    assert main(["fetch", *native]) == 0
    distinct = distinct_items(vendor.base_url, data, "sketch", 1)
    assert vendor.usage(key)["budget"]["used"] == len(distinct)
    capsys.readouterr()
    openai = [a if a != vendor.base_url else vendor.base_url + "/v1" for a in native]
    # The vendor's card (fingerprint included) comes with /v1/models: the same cache keys.
    assert main(["fetch", "--api", "openai", *openai]) == 0
    assert "done: sent 0 queries" in capsys.readouterr().out
    # A fresh cache through the OpenAI route pays for each distinct item once, as natively.
    fresh = [a if a != str(cache) else str(tmp_path / "fresh") for a in openai]
    assert main(["fetch", "--api", "openai", *fresh]) == 0
    assert vendor.usage(key)["budget"]["used"] == 2 * len(distinct)
    assert cached_count(tmp_path / "fresh", distinct) == len(distinct)
