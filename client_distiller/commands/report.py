"""Print and plot the teacher spend recorded in the cache's budget ledger."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import Field

from client_distiller.commands.common import EXIT_OK, UserError, print_table
from client_distiller.commands.options import CacheOptions
from client_distiller.teacher import BudgetLedger, SpendRow


class Report(CacheOptions):
    """Print and plot the teacher spend recorded in the cache's budget ledger."""

    plot: Path | None = Field(None, description="PNG to write (default <cache-dir>/spend.png)")

    def run(self) -> int:
        """Print spend per stage and purpose, totals, the vendor's last reported budget; plot it."""
        ledger_path = self.cache_dir / "ledger.sqlite"
        if not ledger_path.is_file():
            raise UserError(
                f"no spend recorded yet in {self.cache_dir} (run `client-distiller "
                f"fetch` first, or pass the --cache-dir it used)"
            )
        ledger = BudgetLedger(self.cache_dir)
        try:
            rows = ledger.by_purpose()
            totals = ledger.totals()
            remaining = ledger.last_budget_remaining()
            timeline = ledger.timeline()
            runs = ledger.runs()
        finally:
            ledger.close()
        print(f"teacher spend in {self.cache_dir} ({runs} run(s))")
        table: list[list[object]] = [
            [r.stage, r.purpose, r.endpoint, r.sent, r.charged, r.cache_hits] for r in rows
        ]
        table.append(["total", "", "", totals["sent"], totals["charged"], totals["cache_hits"]])
        print_table(["stage", "purpose", "endpoint", "sent", "charged", "cache hits"], table)
        print(f"vendor-reported remaining budget: {'unknown' if remaining is None else remaining}")
        plot = self.plot or self.cache_dir / "spend.png"
        _plot(rows, timeline, plot)
        print(f"plot: {plot}")
        return EXIT_OK


def _plot(
    rows: Sequence[SpendRow],
    timeline: Sequence[tuple[float, int, int, int | None]],
    path: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    labels = [f"{r.stage}\n{r.purpose}" for r in rows]
    x = range(len(rows))
    ax1.bar([i - 0.2 for i in x], [r.sent for r in rows], width=0.4, label="sent")
    ax1.bar([i + 0.2 for i in x], [r.cache_hits for r in rows], width=0.4, label="cache hits")
    ax1.set_xticks(list(x), labels, fontsize=8)
    ax1.set_ylabel("items")
    ax1.set_title("queries by stage / purpose")
    ax1.legend()
    sent = hits = 0
    cum_sent, cum_hits, rem_x, rem_y = [], [], [], []
    for i, (_, s, h, r) in enumerate(timeline):
        sent += s
        hits += h
        cum_sent.append(sent)
        cum_hits.append(hits)
        if r is not None:
            rem_x.append(i)
            rem_y.append(r)
    ax2.plot(cum_sent, label="sent (cumulative)")
    ax2.plot(cum_hits, label="cache hits (cumulative)")
    if rem_y:
        ax2.plot(rem_x, rem_y, label="vendor budget remaining")
    ax2.set_xlabel("ledger event")
    ax2.set_ylabel("queries")
    ax2.set_title("spend over time")
    ax2.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
