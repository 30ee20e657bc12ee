"""Print and plot the teacher spend recorded in the cache's budget ledger."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from client_distiller.commands.common import EXIT_OK, UserError, print_table
from client_distiller.commands.options import CacheOptions
from client_distiller.report_html import find_results, read_spend, write_html_report
from client_distiller.results import load_records
from client_distiller.teacher import BudgetLedger, SpendRow


class Report(CacheOptions):
    """Print and plot the teacher spend recorded in the cache's budget ledger."""

    plot: Path | None = Field(None, description="PNG to write (default <cache-dir>/spend.png)")
    html: Path | None = Field(
        None, description="also write the report as one self-contained HTML file (charts inline)"
    )
    results: Path | None = Field(
        None,
        description="run results for --html's accuracy against queries (default: results.jsonl "
        "beside --cache-dir, else in run's default --out, when there)",
    )

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
        if self.html is not None:
            from client_distiller.commands.run import Run  # only here: it imports torch

            results = self.results or find_results(self.cache_dir, Run.model_fields["out"].default)
            if results is not None and not results.is_file():
                raise UserError(f"no run results at {results}")
            records = load_records(results) if results is not None else []
            spend = read_spend(self.cache_dir)
            print(
                f"html report: {write_html_report(self.html, spend, records, results_path=results)}"
            )
        return EXIT_OK


def spend_figure(
    rows: Sequence[SpendRow], timeline: Sequence[tuple[float, int, int, int | None]]
) -> Any:
    """The figure of ``report``: queries by stage and purpose, and spend over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    left_inches = max(3.5, 1.1 * len(rows) + 1.0)
    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(left_inches + 5.0, 4.2), width_ratios=[left_inches, 4.5]
    )
    labels = [f"{r.stage}\n{r.purpose}" for r in rows]
    x = np.arange(len(rows))
    bars = [
        ax1.bar(x - 0.2, [r.sent for r in rows], width=0.4, label="sent"),
        ax1.bar(x + 0.2, [r.cache_hits for r in rows], width=0.4, label="cache hits"),
    ]
    for group in bars:  # the counts themselves: a 7-text bar beside a 5,000-view one is a sliver
        ax1.bar_label(group, fmt="{:,.0f}", fontsize=7, padding=1)
    values = [v for r in rows for v in (r.sent, r.cache_hits) if v > 0]
    if values and max(values) / min(values) > 50:
        ax1.set_yscale("log")  # so the small groups are visible bars, not a line at zero
        ax1.set_ylim(0.8, max(values) * 3)
        ax1.set_ylabel("items (log scale)")
    else:
        ax1.set_ylim(0, max(values or [1]) * 1.15)
        ax1.set_ylabel("items")
    ax1.set_xticks(list(x), labels, fontsize=8)
    ax1.set_title("queries by stage / purpose", fontsize=10)
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=2, frameon=False)

    times, cum_sent, cum_hits, rem_t, rem_y = [], [], [], [], []
    sent = hits = 0
    for t, s, h, r in timeline:
        sent += s
        hits += h
        when = datetime.fromtimestamp(t)
        times.append(when)
        cum_sent.append(sent)
        cum_hits.append(hits)
        if r is not None:
            rem_t.append(when)
            rem_y.append(r)
    ax2.step(times, cum_sent, where="post", label="sent (cumulative)")
    ax2.step(times, cum_hits, where="post", label="cache hits (cumulative)")
    if rem_y:
        # Cache hits do not touch the budget: the last report holds until the last event.
        ax2.step(
            [*rem_t, times[-1]], [*rem_y, rem_y[-1]], where="post", label="vendor budget remaining"
        )
    locator = mdates.AutoDateLocator(maxticks=5)
    ax2.xaxis.set_major_locator(locator)
    ax2.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax2.set_xlabel("time (local)")
    ax2.set_ylabel("queries")
    ax2.set_ylim(bottom=0)
    ax2.set_title("spend over time", fontsize=10)
    ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=2, frameon=False)
    return fig


def _plot(
    rows: Sequence[SpendRow],
    timeline: Sequence[tuple[float, int, int, int | None]],
    path: Path,
) -> None:
    import matplotlib.pyplot as plt

    fig = spend_figure(rows, timeline)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    # "tight" grows the canvas for the legends under the axes instead of cutting them off.
    fig.savefig(path, dpi=100, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
