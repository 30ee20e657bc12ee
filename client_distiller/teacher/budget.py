"""The client's own budget ledger: what was sent, what the cache saved, what the vendor says."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    time REAL NOT NULL,
    stage TEXT NOT NULL,
    purpose TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    sent INTEGER NOT NULL,        -- items sent to the teacher in this event
    charged INTEGER NOT NULL,     -- queries the vendor charged (0 for idempotent replays)
    cache_hits INTEGER NOT NULL,  -- items served from the cache instead
    budget_remaining INTEGER,     -- the vendor's remaining budget after the event, if known
    fingerprint TEXT NOT NULL,
    request_id TEXT
);
"""


@dataclass(frozen=True)
class SpendRow:
    """Totals for one (stage, purpose, endpoint)."""

    stage: str
    purpose: str
    endpoint: str
    sent: int
    charged: int
    cache_hits: int


class BudgetLedger:
    """Append-only event log in ``<cache_dir>/ledger.sqlite`` that ``report`` reads across runs.

    Every chunk sent is one row, written the moment it arrives, like the cache entry it pays
    for; cache hits are one row per call.

    Args:
        directory: the cache directory.
        run_id: groups the rows of one process run; a fresh one by default.
    """

    def __init__(self, directory: str | Path, *, run_id: str | None = None) -> None:
        self.path = Path(directory) / "ledger.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)

    def record(
        self,
        *,
        stage: str,
        purpose: str,
        endpoint: str,
        fingerprint: str,
        sent: int = 0,
        charged: int = 0,
        cache_hits: int = 0,
        budget_remaining: int | None = None,
        request_id: str | None = None,
    ) -> None:
        """Append one event."""
        with self._lock:
            self._db.execute(
                "INSERT INTO events (run_id, time, stage, purpose, endpoint, sent, charged,"
                " cache_hits, budget_remaining, fingerprint, request_id)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    self.run_id,
                    time.time(),
                    stage,
                    purpose,
                    endpoint,
                    sent,
                    charged,
                    cache_hits,
                    budget_remaining,
                    fingerprint,
                    request_id,
                ),
            )

    def totals(self, *, run_id: str | None = None) -> dict[str, int]:
        """Sums of sent / charged / cache_hits (of one run, or of all)."""
        where, args = ("WHERE run_id = ?", (run_id,)) if run_id else ("", ())
        row = self._db.execute(
            f"SELECT COALESCE(SUM(sent),0), COALESCE(SUM(charged),0),"
            f" COALESCE(SUM(cache_hits),0) FROM events {where}",
            args,
        ).fetchone()
        return {"sent": row[0], "charged": row[1], "cache_hits": row[2]}

    def by_purpose(self) -> list[SpendRow]:
        """Totals per (stage, purpose, endpoint), all runs."""
        rows = self._db.execute(
            "SELECT stage, purpose, endpoint, SUM(sent), SUM(charged), SUM(cache_hits)"
            " FROM events GROUP BY stage, purpose, endpoint ORDER BY stage, purpose, endpoint"
        ).fetchall()
        return [SpendRow(*r) for r in rows]

    def last_budget_remaining(self) -> int | None:
        """The vendor's remaining budget as last reported: the lowest report of the latest run.

        Chunks run concurrently, so they finish (and are recorded) out of charge order; within a
        run the remaining budget only falls (barring a top-up), so the minimum is the latest.
        """
        row = self._db.execute(
            "SELECT MIN(budget_remaining) FROM events WHERE run_id = (SELECT run_id FROM events"
            " WHERE budget_remaining IS NOT NULL ORDER BY id DESC LIMIT 1)"
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def timeline(self) -> list[tuple[float, int, int, int | None]]:
        """(time, sent, cache_hits, budget_remaining) per event, oldest first.

        ``budget_remaining`` is the lowest report so far within the event's run (concurrent
        requests are recorded out of charge order; see ``last_budget_remaining``).
        """
        out, run, low = [], None, None
        for t, run_id, sent, hits, rem in self._db.execute(
            "SELECT time, run_id, sent, cache_hits, budget_remaining FROM events ORDER BY id"
        ):
            if run_id != run:
                run, low = run_id, None
            if rem is not None:
                low = rem if low is None else min(low, rem)
            out.append((t, sent, hits, low if rem is not None else None))
        return out

    def runs(self) -> int:
        """Number of distinct runs recorded."""
        return int(self._db.execute("SELECT COUNT(DISTINCT run_id) FROM events").fetchone()[0])

    def close(self) -> None:
        """Close the database."""
        self._db.close()
