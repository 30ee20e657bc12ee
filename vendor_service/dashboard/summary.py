"""The dashboard's numbers, read through the ``Store`` interface only.

A key's totals (budget, used, per-endpoint charges) are one ``Store.usage`` call, the same one
``GET /v1/usage`` answers from; its series pages through the ledger newest first and stops at
the start of the window, so a long history costs nothing beyond the window it shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from vendor_service.dashboard.schemas import Period
from vendor_service.metering import LedgerRow, Store, UsageSummary

#: Bin width and number of bins per period.
PERIODS: dict[Period, tuple[timedelta, int]] = {
    "hour": (timedelta(hours=1), 24),
    "day": (timedelta(days=1), 30),
}

#: Ledger rows read per ``Store.usage`` page (the store's largest page).
PAGE = 1000

# Rows are ordered by their sequence number, times by the clock of the worker that took the
# charge: a row this much older than the window may still be followed by one inside it.
_CLOCK_SLACK = timedelta(minutes=5)


def bin_starts(period: Period, now: datetime) -> list[datetime]:
    """The start of each bin (UTC), oldest first; the last bin holds ``now``."""
    step, count = PERIODS[period]
    now = _utc(now)
    last = now.replace(minute=0, second=0, microsecond=0)
    if period == "day":
        last = last.replace(hour=0)
    return [last - step * (count - 1 - i) for i in range(count)]


def _utc(moment: datetime) -> datetime:
    # Stores write aware UTC times; a naive one can only be UTC too.
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def bin_counts(rows: Sequence[LedgerRow], starts: Sequence[datetime], step: timedelta) -> list[int]:
    """Charged queries of ``rows`` per bin (refunded rows and rows before the window left out).

    A row after the last bin's end (a worker's clock ahead of this one's) counts in the last bin.
    """
    counts = [0] * len(starts)
    for row in rows:
        if row.status != "charged":
            continue
        offset = _utc(row.created_at) - starts[0]
        if offset < timedelta(0):
            continue
        counts[min(len(starts) - 1, int(offset // step))] += row.queries
    return counts


def key_usage(
    store: Store, key_id: str, starts: Sequence[datetime], step: timedelta
) -> tuple[UsageSummary, list[int]] | None:
    """The key's usage summary (totals, first page) and its charged queries per bin.

    Returns:
        None when the store has no such key.
    """
    first = store.usage(key_id, limit=PAGE)
    if first is None:
        return None
    window: list[LedgerRow] = []
    page: UsageSummary | None = first
    oldest_needed = starts[0] - _CLOCK_SLACK
    while page is not None:
        window += page.entries
        if not page.next_cursor or (
            page.entries and _utc(page.entries[-1].created_at) < oldest_needed
        ):
            break
        page = store.usage(key_id, limit=PAGE, cursor=page.next_cursor)
    return first, bin_counts(window, starts, step)
