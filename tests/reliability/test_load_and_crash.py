"""Exact budgets under concurrent load, and through SIGKILLs of the vendor mid-load.

A real ``vendor-service serve`` (3 workers, vl2v-tiny, SQLite WAL file) takes many client
threads with random batch sizes and random idempotent retries against several small budgets;
afterwards ``loadgen.verify`` reconciles every answer the clients saw with the ledger on disk.
"""

from __future__ import annotations

import pytest

from tests.helpers.vendor_process import VendorProcess
from tests.reliability.conftest import LEVELS, Level, ensure_running, new_key, write_figures
from tests.reliability.loadgen import LoadRunner, verify

pytestmark = pytest.mark.slow


def _keys(vendor: VendorProcess, level: Level, tag: str) -> list[str]:
    keys = [new_key(vendor, level.budget, f"{tag}-{i}")[0] for i in range(level.keys - 1)]
    # One key with a tight rate limit, so throttling (429) is part of every run.
    keys.append(
        new_key(vendor, level.budget, f"{tag}-slow", rate_limit_rps=2.0, rate_limit_burst=3)[0]
    )
    return keys


@pytest.mark.parametrize("level", LEVELS)
def test_concurrent_load_is_metered_exactly(rel_vendor: VendorProcess, level: Level) -> None:
    ensure_running(rel_vendor)
    keys = _keys(rel_vendor, level, f"load-{level.name}")
    result = LoadRunner(
        rel_vendor,
        keys,
        threads=level.threads,
        requests_per_thread=level.requests_per_thread,
        seed=1,
    ).run()
    figures = verify(rel_vendor, keys, result).figures
    figures["threads"] = level.threads
    write_figures("load", level, figures)

    assert figures["kills"] == 0 and figures["lost_answers_replayed"] == 0
    assert figures["answers_lost_to_kill_then_replayed_on_retry"] == 0
    assert figures["charged_queries"] == figures["served_queries"]
    statuses = figures["status_counts"]
    # The scenario really exercised what it claims: budgets ran out, throttling and replays.
    assert statuses.get("402", 0) > 0, statuses
    assert statuses.get("429", 0) > 0, statuses
    assert figures["replays"] > 0
    assert statuses.get("none", 0) == 0  # no kill: every request got an answer


@pytest.mark.parametrize("level", LEVELS)
def test_sigkill_during_load_loses_and_doubles_nothing(
    rel_vendor: VendorProcess, level: Level
) -> None:
    ensure_running(rel_vendor)
    keys = _keys(rel_vendor, level, f"crash-{level.name}")
    # Half a budget per restart keeps charges flowing after each restart (so the next kill
    # finds some in flight); one tiny key that is never topped up runs out early, so 402s
    # are part of every run whatever the machine's speed.
    topups = dict.fromkeys(keys, level.budget // 2)
    keys.append(new_key(rel_vendor, 10, f"crash-{level.name}-tiny")[0])
    runner = LoadRunner(
        rel_vendor,
        keys,
        threads=level.threads,
        requests_per_thread=0,
        kills=level.vendor_kills,
        seed=2,
        topup_per_restart=topups,
    )
    result = runner.run()
    assert result.kills == level.vendor_kills
    figures = verify(rel_vendor, keys, result).figures
    figures["threads"] = level.threads
    write_figures("crash", level, figures)

    statuses = figures["status_counts"]
    assert statuses.get("none", 0) > 0, "no request was cut by a kill"
    assert statuses.get("402", 0) > 0, statuses  # the small budgets ran out
    # Every request cut by a kill was eventually answered (the runner retried it).
    answered = {a.logical for a in result.attempts if a.status is not None}
    assert answered == set(result.logicals)
    # After each restart somebody was served again with the same keys.
    assert max(a.after_kill for a in result.attempts if a.status == 200) == level.vendor_kills
