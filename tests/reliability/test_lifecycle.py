"""Billing across process lifecycles, with real servers and real SIGKILLs (issue 13, items 1-2).

- One worker of ``--workers 3`` is SIGKILLed while it holds charges in flight (uvicorn respawns
  it): its charges are refunded and their idempotency keys freed within seconds, by the
  survivors, and no live worker's charge is touched.
- A second ``serve`` on a data dir in use fails with a one-line message and changes nothing.

Both failed on the code before owners and the data-dir lock (commit 838dbf3): the killed
worker's retries got 409 until the deadline; the second server refunded the live one's charge,
which was then delivered for free.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx
import pytest

from tests.helpers.vendor_process import REPO_ROOT, VendorProcess, start_vendor
from tests.reliability.conftest import auth, ledger_db, new_key, read_only, write_figures

pytestmark = pytest.mark.slow

LEVELS = [
    pytest.param(1, id="reduced"),
    pytest.param(3, id="full", marks=pytest.mark.reliability),
]


def _rows(vendor: VendorProcess) -> list[dict]:
    conn = read_only(ledger_db(vendor))
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM ledger ORDER BY seq")]
    finally:
        conn.close()


def _owner_pids(vendor: VendorProcess) -> dict[str, int]:
    conn = read_only(ledger_db(vendor))
    try:
        return {r["id"]: r["pid"] for r in conn.execute("SELECT id, pid FROM owners")}
    except sqlite3.OperationalError:  # no owners table (the code before owners)
        return {}
    finally:
        conn.close()


def _children(pid: int) -> list[int]:
    """Child pids of ``pid`` (the uvicorn workers of a `serve`)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(entry))
    return out


@dataclass
class Client:
    """One logical request, retried with its Idempotency-Key until answered."""

    key: str
    idem: str = field(default_factory=lambda: "idem-" + uuid.uuid4().hex)
    attempts: list[tuple[float, int | None, str | None, bool]] = field(default_factory=list)
    answered_at: float | None = None

    def run(self, base_url: str, deadline: float) -> None:
        body = {"texts": [f"lifecycle {self.idem}"]}
        headers = {**auth(self.key), "Idempotency-Key": self.idem}
        while time.monotonic() < deadline:
            try:
                with httpx.Client(base_url=base_url, timeout=30) as client:
                    resp = client.post("/v1/embeddings/texts", json=body, headers=headers)
            except httpx.HTTPError:
                self.attempts.append((time.monotonic(), None, None, False))
                time.sleep(0.2)
                continue
            replayed = resp.headers.get("idempotent-replayed") == "true"
            rid = resp.json().get("request_id") if resp.status_code == 200 else None
            self.attempts.append((time.monotonic(), resp.status_code, rid, replayed))
            if resp.status_code == 200:
                self.answered_at = time.monotonic()
                return
            time.sleep(0.3)  # 409: the first attempt is in flight (or stranded)


def _wait_in_flight(vendor: VendorProcess, count: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = [r for r in _rows(vendor) if r["state"] == "in_flight"]
        if len(rows) >= count:
            return rows
        time.sleep(0.05)
    raise TimeoutError(f"fewer than {count} charges in flight after {timeout}s")


@pytest.mark.parametrize("kills", LEVELS)
def test_a_killed_workers_charges_are_refunded_and_its_keys_freed(tmp_path, kills: int) -> None:
    vendor = start_vendor(tmp_path, workers=3, debug_delay_ms=1500, max_batch=32)
    figures: list[dict] = []
    try:
        key, _ = new_key(vendor, 1000, "lifecycle")
        for _round in range(kills):
            clients = [Client(key) for _ in range(12)]
            deadline = time.monotonic() + 90
            threads = [
                threading.Thread(target=c.run, args=(vendor.base_url, deadline), daemon=True)
                for c in clients
            ]
            for t in threads:
                t.start()
            in_flight = _wait_in_flight(vendor, 6)
            time.sleep(0.2)  # let the rest arrive too
            in_flight = [r for r in _rows(vendor) if r["state"] == "in_flight"]
            pids = _owner_pids(vendor)
            if pids:  # kill a worker that holds charges; the others hold some too, or none
                victim_owner = max(
                    {r["owner"] for r in in_flight},
                    key=lambda o: sum(r["owner"] == o for r in in_flight),
                )
                victim = pids[victim_owner]
            else:  # the code before owners: any worker (all share the instance id)
                victim_owner, victim = in_flight[0]["owner"], _children(vendor.proc.pid)[0]
            victims = {r["request_id"] for r in in_flight if r["owner"] == victim_owner}
            others = {r["request_id"] for r in in_flight if r["owner"] != victim_owner}
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)

            # Within seconds, by the survivors: the dead worker's charges refunded.
            refunded_after = None
            while time.monotonic() < killed_at + 20:
                by_rid = {r["request_id"]: r for r in _rows(vendor)}
                if all(by_rid[rid]["status"] == "refunded" for rid in victims):
                    refunded_after = time.monotonic() - killed_at
                    break
                time.sleep(0.05)
            for t in threads:
                t.join(100)
            rows = _rows(vendor)
            by_rid = {r["request_id"]: r for r in rows}
            assert refunded_after is not None, (
                "the killed worker's charges stayed charged",
                [by_rid[r]["status"] for r in victims],
            )
            assert refunded_after < 5.0, refunded_after
            # Every client got its answer: the killed worker's by a fresh charge on a survivor
            # (the key was freed: no 409 forever), the others' by their own first charge.
            assert all(c.answered_at is not None for c in clients), [c.attempts for c in clients]
            final = {c.idem: c.attempts[-1] for c in clients}
            for rid in others:  # live workers' charges were never touched
                assert by_rid[rid]["status"] == "charged" and by_rid[rid]["state"] == "done"
            charged = [r for r in rows if r["status"] == "charged"]
            per_idem: dict[str, int] = {}
            for r in charged:
                per_idem[r["idempotency_key"]] = per_idem.get(r["idempotency_key"], 0) + 1
            for c in clients:
                assert per_idem.get(c.idem) == 1, c.attempts  # paid exactly once
                rid = final[c.idem][2]
                assert by_rid[rid]["status"] == "charged"
            assert all(r["state"] == "done" for r in rows)
            used = vendor.usage(key)["budget"]["used"]
            assert used == sum(r["queries"] for r in charged)
            figures.append(
                {
                    "in_flight_at_kill": len(in_flight),
                    "killed_workers_charges": len(victims),
                    "refunded_after_s": round(refunded_after, 2),
                    "retry_answered_after_s": round(
                        max(
                            c.answered_at - killed_at
                            for c in clients
                            if c.answered_at and any(a[1] is None for a in c.attempts)
                        )
                        if any(any(a[1] is None for a in c.attempts) for c in clients)
                        else 0.0,
                        2,
                    ),
                }
            )
            # uvicorn respawned the worker; wait until three owners live again
            deadline = time.monotonic() + 60
            while len(_owner_pids(vendor)) < 3 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert victim not in _owner_pids(vendor).values()
    finally:
        vendor.stop()
    write_figures(
        "worker-kill", _level(kills), {"kills": figures, "workers": 3, "queries_per_request": 1}
    )


def _level(kills: int):
    from tests.reliability.conftest import FULL, REDUCED

    return REDUCED if kills == 1 else FULL


def test_a_second_serve_on_a_data_dir_in_use_fails_and_changes_nothing(tmp_path) -> None:
    # The charge stays in flight for 12 s: longer than the second `serve` takes to give up.
    vendor = start_vendor(tmp_path, workers=1, debug_delay_ms=12000)
    try:
        key, _ = new_key(vendor, 10, "second-serve")
        result: dict = {}

        def request() -> None:
            result["resp"] = httpx.post(
                vendor.base_url + "/v1/embeddings/texts",
                json={"texts": ["a", "b"]},
                headers={**auth(key), "Idempotency-Key": "only-once"},
                timeout=60,
            )

        t = threading.Thread(target=request, daemon=True)
        t.start()
        before = _wait_in_flight(vendor, 1)
        ledger_before = _rows(vendor)
        # The same command line as the live server (same port, same dir): an operator's slip.
        env = {k: v for k, v in os.environ.items() if not k.startswith("VENDOR_")}
        env["VENDOR_ADMIN_TOKEN"] = vendor.admin_token
        second = subprocess.run(
            vendor.command(), cwd=REPO_ROOT, env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert second.returncode == 2, second.stderr[-2000:]
        lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
        assert lines[-1].startswith("error: the data dir") and "in use" in lines[-1], lines
        assert "Traceback" not in second.stderr and "refunded" not in second.stderr

        # Nothing changed (the first server may have finished the request meanwhile: `state`).
        def billing(rows: list[dict]) -> list[tuple]:
            return [(r["request_id"], r["status"], r["queries"], r["owner"]) for r in rows]

        assert billing(_rows(vendor)) == billing(ledger_before)
        t.join(60)
        resp = result["resp"]
        assert resp.status_code == 200 and resp.headers["x-queries-charged"] == "2"
        (row,) = [r for r in _rows(vendor) if r["request_id"] == before[0]["request_id"]]
        assert (row["status"], row["state"]) == ("charged", "done")  # delivered and paid
        assert vendor.usage(key)["budget"]["used"] == 2
    finally:
        vendor.stop()
    # With the first one gone, the dir is free again.
    assert vendor.restart().usage(key)["budget"]["used"] == 2
    vendor.stop()


def test_sigkilled_server_releases_its_data_dir(tmp_path) -> None:
    vendor = start_vendor(tmp_path, workers=2)
    key, _ = new_key(vendor, 10, "lock")
    vendor.kill()  # the kernel drops the flock with the process: a restart just works
    assert vendor.restart().usage(key)["budget"]["used"] == 0
    vendor.stop()
