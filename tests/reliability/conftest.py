"""Fixtures of the reliability suite: one real 3-worker vendor per session, levels, figures.

Every scenario is parametrized by a ``Level``: ``reduced`` runs in ``make test`` (small counts),
``full`` is marked ``reliability`` and runs only in ``make reliability`` (``--run-reliability``).
One code path serves both; only the counts differ.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.vendor_process import REPO_ROOT, VendorProcess, start_vendor

FIGURES_DIR = REPO_ROOT / "runs" / "reliability"

#: Knobs of the session vendor. 20 ms per batch widens the window in which a SIGKILL finds
#: charged requests still in flight (and makes a client fetch slow enough to kill midway).
VENDOR_KNOBS: dict[str, Any] = {
    "max_request_bytes": 1_000_000,
    "max_items_per_request": 16,
    "max_batch": 32,
    "debug_delay_ms": 20,
}


@dataclass(frozen=True)
class Level:
    """The counts of one run of the suite."""

    name: str
    threads: int  # concurrent client threads of the load scenarios
    requests_per_thread: int  # logical requests per thread in the no-kill load test
    keys: int  # keys under load
    budget: int  # queries per key (small on purpose: budgets run out under load)
    vendor_kills: int  # SIGKILL + restart cycles of the vendor during load
    client_kills: int  # SIGKILLs of `client-distiller fetch` before the final rerun
    train_kills: int  # SIGKILLs of `client-distiller run` before the final rerun
    fuzz_examples: int  # schemathesis --max-examples per operation
    fuzz_min_requests: int  # requests the fuzz must have sent (counted by the server)


REDUCED = Level(
    "reduced",
    threads=16,
    requests_per_thread=6,
    keys=3,
    budget=60,
    vendor_kills=1,
    client_kills=1,
    train_kills=1,
    fuzz_examples=10,
    fuzz_min_requests=150,
)
FULL = Level(
    "full",
    threads=64,
    requests_per_thread=16,
    keys=4,
    budget=300,
    vendor_kills=5,
    client_kills=3,
    train_kills=2,
    fuzz_examples=150,
    fuzz_min_requests=1000,
)

#: ``@pytest.mark.parametrize("level", LEVELS)``: reduced in make test, full in make reliability.
LEVELS = [
    pytest.param(REDUCED, id="reduced"),
    pytest.param(FULL, id="full", marks=pytest.mark.reliability),
]


@pytest.fixture(scope="session")
def rel_vendor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VendorProcess]:
    """A real ``vendor-service serve`` with 3 workers, model vl2v-tiny, SQLite in a tmp dir."""
    vendor = start_vendor(tmp_path_factory.mktemp("rel-vendor"), workers=3, **VENDOR_KNOBS)
    yield vendor
    vendor.stop()


def ensure_running(vendor: VendorProcess) -> None:
    """Restart the vendor if an earlier test left it dead (a failed crash test)."""
    if vendor.proc is None or vendor.proc.poll() is not None:
        vendor.restart()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def new_key(vendor: VendorProcess, budget: int, name: str, **fields: Any) -> tuple[str, str]:
    """Create a key; returns (clear key, key id)."""
    resp = httpx.post(
        vendor.base_url + "/v1/admin/keys",
        json={"name": name, "budget": budget, **fields},
        headers=vendor.admin_headers(),
        timeout=30,
    )
    resp.raise_for_status()
    body = resp.json()
    return body["key"], body["info"]["id"]


def ledger_db(vendor: VendorProcess) -> Path:
    return vendor.data_dir / "ledger.sqlite3"


def read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to the vendor's live SQLite file (WAL readers never block it)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def all_usage_entries(vendor: VendorProcess, key: str, page: int = 37) -> tuple[dict, list[dict]]:
    """Every ledger row ``GET /v1/usage`` shows for ``key`` (all pages) and the first page."""
    first, entries, cursor = None, [], None
    while True:
        params: dict[str, Any] = {"limit": page}
        if cursor:
            params["cursor"] = cursor
        resp = httpx.get(
            vendor.base_url + "/v1/usage", params=params, headers=auth(key), timeout=30
        )
        resp.raise_for_status()
        body = resp.json()
        first = first or body
        entries += body["entries"]
        cursor = body["next_cursor"]
        if not cursor:
            return first, entries


def write_figures(scenario: str, level: Level, figures: dict[str, Any]) -> Path:
    """Print the figures and write them to ``runs/reliability/<scenario>-<level>.json``."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    path = FIGURES_DIR / f"{scenario}-{level.name}.json"
    record = {
        "scenario": scenario,
        "level": asdict(level),
        "figures": figures,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(f"\nRELIABILITY {scenario} [{level.name}] {json.dumps(figures, sort_keys=True)}")
    return path
