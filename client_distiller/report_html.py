"""The teacher spend as one self-contained HTML file (``client-distiller report --html PATH``).

Everything is inside the file: the style sheet, the charts (inline SVG) and the numbers, so it
opens anywhere, offline, and can be mailed or archived as it is; it has no script. It shows:

- spend by stage and purpose (sent, charged, cache hits), from the cache's budget ledger;
- what the cache saved (items answered from it instead of being paid for again);
- the vendor's remaining budget as it last reported it;
- where run results exist, accuracy against the teacher queries each setting used.

The numbers carry ``data-field``/``data-value`` attributes so a test can read them back.
"""

from __future__ import annotations

import html
import itertools
import math
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from client_distiller.results import ALGORITHM_ORDER, RunRecord
from client_distiller.teacher import BudgetLedger, SpendRow

SENT_COLOUR, HITS_COLOUR, BUDGET_COLOUR = "#0072B2", "#E69F00", "#009E73"
# Okabe-Ito: distinct for the common colour-vision deficiencies
SERIES_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]


@dataclass(frozen=True)
class SpendData:
    """What the budget ledger of one cache directory holds.

    Attributes:
        cache_dir: the cache directory.
        rows: totals per (stage, purpose, endpoint).
        totals: ``sent``, ``charged`` and ``cache_hits`` over everything.
        runs: process runs recorded.
        budget_remaining: the vendor's remaining budget as last reported (None: never).
        budget_reported_at: when it last reported one (Unix time).
        timeline: (time, sent, cache hits, remaining budget or None) per event, oldest first.
    """

    cache_dir: Path
    rows: list[SpendRow]
    totals: dict[str, int]
    runs: int
    budget_remaining: int | None
    budget_reported_at: float | None = None
    timeline: list[tuple[float, int, int, int | None]] = field(default_factory=list)


def read_spend(cache_dir: str | Path) -> SpendData:
    """Read the budget ledger of ``cache_dir`` (``<cache_dir>/ledger.sqlite``)."""
    ledger = BudgetLedger(cache_dir)
    try:
        timeline = ledger.timeline()
        reported = [t for t, _, _, r in timeline if r is not None]
        return SpendData(
            cache_dir=Path(cache_dir),
            rows=ledger.by_purpose(),
            totals=ledger.totals(),
            runs=ledger.runs(),
            budget_remaining=ledger.last_budget_remaining(),
            budget_reported_at=reported[-1] if reported else None,
            timeline=timeline,
        )
    finally:
        ledger.close()


def find_results(cache_dir: Path, run_out: Path) -> Path | None:
    """The run results a report of ``cache_dir`` most likely belongs with, if any exist.

    ``results.jsonl`` beside the cache directory first (``make demo`` keeps both in
    ``runs/demo/``), else in ``run_out`` (``client-distiller run``'s default ``--out``).
    """
    for candidate in (Path(cache_dir).parent / "results.jsonl", Path(run_out) / "results.jsonl"):
        if candidate.is_file():
            return candidate
    return None


def write_html_report(
    path: str | Path,
    spend: SpendData,
    records: Sequence[RunRecord] = (),
    *,
    results_path: Path | None = None,
    generated_at: datetime | None = None,
) -> Path:
    """Write :func:`build_html` to ``path`` atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = build_html(spend, records, results_path=results_path, generated_at=generated_at)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# -- the page --------------------------------------------------------------------------------

_STYLE = """
:root { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
  color: #1d2330; background: #f6f7fa; }
body { margin: 0; padding: 1.2rem 1.6rem 2rem; max-width: 1200px; }
h1 { font-size: 1.35rem; margin: 0 0 0.2rem; }
h2 { font-size: 1.08rem; margin: 1.8rem 0 0.6rem; }
.muted, .note { color: #5d6677; font-size: 0.9rem; }
.note { margin: 0.4rem 0 0; max-width: 60rem; }
.cards { display: flex; flex-wrap: wrap; gap: 0.8rem; margin-top: 1rem; }
.card { background: #fff; border: 1px solid #d9dee7; border-radius: 6px; padding: 0.7rem 1rem;
  flex: 1 1 0; min-width: 9rem; max-width: 15rem; }
.card .label { color: #5d6677; font-size: 0.85rem; }
.card .value { font-size: 1.5rem; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .sub { color: #5d6677; font-size: 0.8rem; }
table { border-collapse: collapse; background: #fff; border: 1px solid #d9dee7;
  font-size: 0.92rem; }
th, td { padding: 0.35rem 0.7rem; border-bottom: 1px solid #d9dee7; text-align: left;
  white-space: nowrap; }
th { background: #eef1f6; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: 600; border-top: 2px solid #c4cad6; }
.figures { display: flex; flex-wrap: wrap; gap: 0.8rem; align-items: flex-start; }
figure { margin: 0.8rem 0 0; background: #fff; border: 1px solid #d9dee7; border-radius: 6px;
  padding: 0.5rem; display: inline-block; max-width: 100%; }
figure svg { display: block; max-width: 100%; height: auto; }
figcaption { color: #5d6677; font-size: 0.85rem; margin: 0.3rem 0.3rem 0; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }
.legend { display: flex; flex-wrap: wrap; gap: 0.3rem 1.2rem; font-size: 0.88rem;
  margin: 0.4rem 0.3rem 0; }
.swatch { display: inline-block; width: 0.8rem; height: 0.8rem; border-radius: 2px;
  margin-right: 0.35rem; vertical-align: -1px; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _n(value: int) -> str:
    return f"{value:,}"


def _num_cell(name: str, value: int) -> str:
    return f'<td class="num" data-field="{_e(name)}" data-value="{value}">{_n(value)}</td>'


def _card(label: str, name: str, value: int | None, sub: str = "") -> str:
    shown = "unknown" if value is None else _n(value)
    data = "" if value is None else f' data-value="{value}"'
    sub_html = f'<div class="sub">{_e(sub)}</div>' if sub else ""
    return (
        f'<div class="card"><div class="label">{_e(label)}</div>'
        f'<div class="value" data-field="{_e(name)}"{data}>{shown}</div>{sub_html}</div>'
    )


def _legend(items: Iterable[tuple[str, str]]) -> str:
    spans = "".join(
        f'<span><span class="swatch" style="background:{c}"></span>{_e(label)}</span>'
        for label, c in items
    )
    return f'<div class="legend">{spans}</div>'


def _time(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def saved_fraction(sent: int, cache_hits: int) -> float | None:
    """Share of the items asked for that the cache answered (None when nothing was asked)."""
    asked = sent + cache_hits
    return None if asked == 0 else cache_hits / asked


def _pct(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f} %"


def build_html(
    spend: SpendData,
    records: Sequence[RunRecord] = (),
    *,
    results_path: Path | None = None,
    generated_at: datetime | None = None,
) -> str:
    """The whole page.

    Args:
        spend: the budget ledger's contents (:func:`read_spend`).
        records: run results (``results.jsonl``); none: the accuracy section says so.
        results_path: where the records came from (shown).
        generated_at: the time printed on the page (default: now).
    """
    generated_at = generated_at or datetime.now(timezone.utc)
    t = spend.totals
    saved = saved_fraction(t["sent"], t["cache_hits"])
    reported = (
        f"as last reported, {_time(spend.budget_reported_at)}"
        if spend.budget_reported_at is not None
        else "never reported (a local teacher, or nothing sent yet)"
    )
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Teacher spend report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Teacher spend report</h1>",
        (
            f'<div class="muted">ledger <code>{_e(spend.cache_dir / "ledger.sqlite")}</code> · '
            f'<span data-field="runs" data-value="{spend.runs}">{spend.runs}</span> run(s) · '
            f"written {_e(generated_at.strftime('%Y-%m-%d %H:%M UTC'))}</div>"
        ),
        '<div class="cards">',
        _card("queries sent", "sent", t["sent"], "items sent to the teacher"),
        _card("queries charged", "charged", t["charged"], "what the vendor charged for them"),
        _card("cache hits", "cache_hits", t["cache_hits"], "answered from the cache, free"),
        (
            '<div class="card"><div class="label">cache savings</div>'
            f'<div class="value" data-field="saved">{_pct(saved)}</div>'
            f'<div class="sub">of {_n(t["sent"] + t["cache_hits"])} items asked for</div></div>'
        ),
        _card("vendor budget remaining", "budget_remaining", spend.budget_remaining, reported),
        "</div>",
        "<h2>Spend by stage and purpose</h2>",
        _spend_table(spend.rows, t),
        _spend_chart(spend.rows),
        "<h2>Spend over time</h2>",
        _timeline_chart(spend.timeline),
        "<h2>Accuracy against queries spent</h2>",
        _accuracy_section(records, results_path),
        (
            '<p class="note">Sent: items the client sent to the teacher. Charged: queries the '
            "vendor charged for them (a retried request replayed by the vendor is sent again but "
            "charged once). Cache hits: items answered from the client's cache instead, each one "
            "query not paid for again.</p>"
        ),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _spend_table(rows: Sequence[SpendRow], totals: dict[str, int]) -> str:
    head = (
        "<tr><th>stage</th><th>purpose</th><th>endpoint</th><th class='num'>sent</th>"
        "<th class='num'>charged</th><th class='num'>cache hits</th>"
        "<th class='num'>saved</th></tr>"
    )
    body = []
    for r in rows:
        body.append(
            f'<tr data-stage="{_e(r.stage)}" data-purpose="{_e(r.purpose)}" '
            f'data-endpoint="{_e(r.endpoint)}"><td>{_e(r.stage)}</td><td>{_e(r.purpose)}</td>'
            f"<td>{_e(r.endpoint)}</td>{_num_cell('sent', r.sent)}"
            f"{_num_cell('charged', r.charged)}{_num_cell('cache_hits', r.cache_hits)}"
            f'<td class="num">{_pct(saved_fraction(r.sent, r.cache_hits))}</td></tr>'
        )
    body.append(
        '<tr class="total" data-stage="total"><td>total</td><td></td><td></td>'
        f"{_num_cell('sent', totals['sent'])}{_num_cell('charged', totals['charged'])}"
        f"{_num_cell('cache_hits', totals['cache_hits'])}"
        f'<td class="num">{_pct(saved_fraction(totals["sent"], totals["cache_hits"]))}</td></tr>'
    )
    return f'<table id="spend">{head}{"".join(body)}</table>'


def _text_width(text: str, size: float = 12) -> float:
    # No font metrics here: about 0.6 em per character in a sans-serif face, a safe overestimate
    return 0.6 * size * len(text)


def _nice_ticks(top: float, count: int = 4) -> list[float]:
    """Round axis ticks from 0 to at least ``top`` (steps of 1, 2 or 5 times a power of 10)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    n = math.ceil(top / step - 1e-9)
    return [i * step for i in range(n + 1)]


def _tick_label(v: float) -> str:
    return _n(int(v)) if float(v).is_integer() else f"{v:g}"


def _svg_open(svg_id: str, width: float, height: float, label: str) -> str:
    """The opening tag of an inline chart (sized in CSS pixels, scaling down on small screens)."""
    return (
        f'<svg id="{_e(svg_id)}" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="{_e(label)}">'
    )


def _spend_chart(rows: Sequence[SpendRow]) -> str:
    """Horizontal bars, two per (stage, purpose): sent and cache hits, each labelled."""
    if not rows:
        return '<p class="muted">Nothing recorded yet.</p>'
    labels = [f"{r.stage} · {r.purpose} ({r.endpoint})" for r in rows]
    left = 16 + max(_text_width(s) for s in labels)
    plot_w, bar_h, gap, top_pad = 520.0, 14.0, 12.0, 8.0
    vmax = max(max(r.sent, r.cache_hits) for r in rows)
    ticks = _nice_ticks(vmax)
    scale = plot_w / ticks[-1]
    right = 72.0  # room for the value label of the longest bar
    height = top_pad + len(rows) * (2 * bar_h + gap) + 36
    width = left + plot_w + right
    out = [
        _svg_open("spend-chart", width, height, "queries sent and cache hits per stage and purpose")
    ]
    axis_y = height - 30
    for v in ticks:
        x = left + v * scale
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top_pad - 4}" y2="{axis_y}" '
            f'stroke="#d9dee7" stroke-dasharray="{"none" if v == 0 else "2 3"}"/>'
            f'<text x="{x:.1f}" y="{axis_y + 15}" font-size="11" fill="#5d6677" '
            f'text-anchor="middle">{_tick_label(v)}</text>'
        )
    out.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 2}" font-size="12" fill="#5d6677" '
        'text-anchor="middle">items</text>'
    )
    for i, (r, label) in enumerate(zip(rows, labels, strict=True)):
        y = top_pad + i * (2 * bar_h + gap)
        out.append(
            f'<text x="{left - 8:.1f}" y="{y + bar_h + 4:.1f}" font-size="12" fill="#1d2330" '
            f'text-anchor="end">{_e(label)}</text>'
        )
        for j, (kind, value, colour) in enumerate(
            [("sent", r.sent, SENT_COLOUR), ("cache_hits", r.cache_hits, HITS_COLOUR)]
        ):
            by = y + j * bar_h
            # a non-zero count is at least 2 px wide, so a small bar next to a large one shows
            w = 0.0 if value == 0 else max(2.0, value * scale)
            out.append(
                f'<rect class="bar" x="{left:.1f}" y="{by:.1f}" width="{w:.1f}" '
                f'height="{bar_h - 2}" fill="{colour}" data-stage="{_e(r.stage)}" '
                f'data-purpose="{_e(r.purpose)}" data-endpoint="{_e(r.endpoint)}" '
                f'data-kind="{kind}" data-value="{value}"><title>{_e(label)}: {_n(value)} '
                f"{'sent' if kind == 'sent' else 'cache hits'}</title></rect>"
                f'<text x="{left + w + 4:.1f}" y="{by + bar_h - 3:.1f}" font-size="11" '
                f'fill="#1d2330">{_n(value)}</text>'
            )
    out.append("</svg>")
    legend = _legend([("sent", SENT_COLOUR), ("cache hits", HITS_COLOUR)])
    return f"<figure>{''.join(out)}{legend}</figure>"


def _time_labels(t0: float, t1: float, count: int = 5) -> list[tuple[float, str]]:
    """``count`` evenly spaced times from ``t0`` to ``t1``, labelled as finely as the span needs
    (seconds after the first event when it all happened within a minute)."""
    span = t1 - t0
    n = count if span > 0 else 1
    times = [t0 + span * i / max(1, n - 1) for i in range(n)]
    if span < 60:
        return [(t, f"+{t - t0:.1f} s" if t > t0 else _clock(t0, "%H:%M:%S")) for t in times]
    fmt = "%H:%M:%S" if span < 600 else "%H:%M" if span < 2 * 86400 else "%Y-%m-%d"
    return [(t, _clock(t, fmt)) for t in times]


def _clock(t: float, fmt: str) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime(fmt)


class _TimeAxes:
    """One chart's frame: wall time across, queries up, the ticks and labels drawn."""

    left, right, top, bottom, plot_w, plot_h = 70.0, 20.0, 12.0, 44.0, 440.0, 220.0

    def __init__(self, t0: float, t1: float, ymax: float, svg_id: str, label: str) -> None:
        self.t0, self.span = t0, max(t1 - t0, 1e-9)
        self.ticks = _nice_ticks(ymax)
        width = self.left + self.plot_w + self.right
        height = self.top + self.plot_h + self.bottom
        self.parts = [_svg_open(svg_id, width, height, label)]
        for v in self.ticks:
            self.parts.append(
                f'<line x1="{self.left}" x2="{self.left + self.plot_w}" y1="{self.y(v):.1f}" '
                f'y2="{self.y(v):.1f}" stroke="#d9dee7" '
                f'stroke-dasharray="{"none" if v == 0 else "2 3"}"/>'
                f'<text x="{self.left - 8}" y="{self.y(v) + 4:.1f}" font-size="11" '
                f'fill="#5d6677" text-anchor="end">{_tick_label(v)}</text>'
            )
        labels = _time_labels(t0, t1)
        for i, (t, text) in enumerate(labels):
            # the end labels inside the frame, not cut at its edges
            anchor = "start" if i == 0 else "end" if i == len(labels) - 1 else "middle"
            self.parts.append(
                f'<text x="{self.x(t):.1f}" y="{self.top + self.plot_h + 16}" font-size="11" '
                f'fill="#5d6677" text-anchor="{anchor}">{_e(text)}</text>'
            )
        mid = self.top + self.plot_h / 2
        self.parts.append(
            f'<text x="{self.left + self.plot_w / 2}" y="{height - 6}" font-size="12" '
            'fill="#5d6677" text-anchor="middle">time (UTC)</text>'
            f'<text x="14" y="{mid}" font-size="12" fill="#5d6677" text-anchor="middle" '
            f'transform="rotate(-90 14 {mid})">queries</text>'
        )

    def x(self, t: float) -> float:
        return self.left + (t - self.t0) / self.span * self.plot_w

    def y(self, v: float) -> float:
        return self.top + self.plot_h - v / self.ticks[-1] * self.plot_h

    def step(self, points: Sequence[tuple[float, float]], **attrs: object) -> None:
        """A step line: each value holds until the next point."""
        d = [f"M{self.x(points[0][0]):.1f},{self.y(points[0][1]):.1f}"]
        for (_, v0), (t, v) in itertools.pairwise(points):
            d.append(f"H{self.x(t):.1f}" + (f"V{self.y(v):.1f}" if v != v0 else ""))
        extra = " ".join(f'{k.replace("_", "-")}="{_e(v)}"' for k, v in attrs.items())
        self.parts.append(f'<path d="{"".join(d)}" fill="none" stroke-width="2" {extra}/>')

    def svg(self) -> str:
        return "".join([*self.parts, "</svg>"])


def _timeline_chart(timeline: Sequence[tuple[float, int, int, int | None]]) -> str:
    """Cumulative sent and cache hits against wall time; beside it the vendor's remaining
    budget (its own scale: a budget of thousands would flatten a spend of tens)."""
    if not timeline:
        return '<p class="muted">Nothing recorded yet.</p>'
    t0, t1 = timeline[0][0], timeline[-1][0]
    sent = hits = 0
    cum: list[tuple[float, int, int]] = [(t0, 0, 0)]
    budget: list[tuple[float, int]] = []
    for t, s, h, rem in timeline:
        sent, hits = sent + s, hits + h
        cum.append((t, sent, hits))
        if rem is not None:
            budget.append((t, rem))
    spend = _TimeAxes(t0, t1, max(sent, hits), "timeline-chart", "cumulative queries over time")
    for name, colour, points in [
        ("sent", SENT_COLOUR, [(t, s) for t, s, _ in cum]),
        ("cache_hits", HITS_COLOUR, [(t, h) for t, _, h in cum]),
    ]:
        spend.step(points, stroke=colour, data_series=name, data_last=points[-1][1])
    legend = _legend([("sent (cumulative)", SENT_COLOUR), ("cache hits (cumulative)", HITS_COLOUR)])
    figures = [f"<figure>{spend.svg()}{legend}</figure>"]
    if budget:
        axes = _TimeAxes(t0, t1, max(b for _, b in budget), "budget-chart", "remaining budget")
        # cache hits do not touch the budget: the last report holds until the last event
        axes.step([*budget, (t1, budget[-1][1])], stroke=BUDGET_COLOUR,
                  data_series="budget_remaining", data_last=budget[-1][1])  # fmt: skip
        legend = _legend([("the vendor's remaining budget, as it reported it", BUDGET_COLOUR)])
        figures.append(f"<figure>{axes.svg()}{legend}</figure>")
    caption = (
        f'<p class="muted">{len(timeline)} ledger events from {_e(_time(t0))} to '
        f"{_e(_time(t1))}.</p>"
    )
    return f'<div class="figures">{"".join(figures)}</div>{caption}'


@dataclass(frozen=True)
class Setting:
    """One (algorithm, views) setting of the run results, averaged over its runs."""

    algorithm: str
    views: str
    runs: int
    queries: float
    id_acc: float
    ood_acc: float
    ood_se: float | None  # None with one run: no error bar to show


def settings_of(records: Sequence[RunRecord]) -> list[Setting]:
    """Mean accuracy and queries per (algorithm, views), in the tables' algorithm order."""
    groups: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for r in records:
        groups[(r.algorithm, str(r.views))].append(r)

    def order(key: tuple[str, str]) -> tuple[int, str, int, str]:
        alg, views = key
        rank = ALGORITHM_ORDER.index(alg) if alg in ALGORITHM_ORDER else len(ALGORITHM_ORDER)
        return (rank, alg, int(views) if views.isdigit() else 10**9, views)

    out = []
    for key in sorted(groups, key=order):
        rs = groups[key]
        ood = [100 * r.ood_acc for r in rs]
        mean = sum(ood) / len(ood)
        se = None
        if len(ood) > 1:
            var = sum((v - mean) ** 2 for v in ood) / (len(ood) - 1)
            se = math.sqrt(var / len(ood))
        out.append(
            Setting(
                algorithm=key[0],
                views=key[1],
                runs=len(rs),
                queries=sum(r.queries_used for r in rs) / len(rs),
                id_acc=sum(100 * r.id_acc for r in rs) / len(rs),
                ood_acc=mean,
                ood_se=se,
            )
        )
    return out


def _accuracy_section(records: Sequence[RunRecord], results_path: Path | None) -> str:
    if not records:
        where = f" in <code>{_e(results_path)}</code>" if results_path else ""
        return (
            f'<p class="muted" id="no-results">No run results{where}: pass '
            "<code>--results OUT/results.jsonl</code> of a <code>client-distiller run</code>."
            "</p>"
        )
    settings = settings_of(records)
    source = f"<code>{_e(results_path)}</code>" if results_path else "the run results"
    head = (
        "<tr><th>algorithm</th><th>views K</th><th class='num'>runs</th>"
        "<th class='num'>teacher queries used</th><th class='num'>ID acc %</th>"
        "<th class='num'>OOD acc %</th></tr>"
    )
    rows = []
    for s in settings:
        ood = f"{s.ood_acc:.1f}" + (f" ± {s.ood_se:.1f}" if s.ood_se is not None else " (n=1)")
        rows.append(
            f'<tr data-algorithm="{_e(s.algorithm)}" data-views="{_e(s.views)}">'
            f"<td>{_e(s.algorithm)}</td><td>{_e(s.views)}</td>{_num_cell('runs', s.runs)}"
            f'<td class="num" data-field="queries" data-value="{s.queries:.1f}">'
            f"{_n(round(s.queries))}</td>"
            f'<td class="num" data-field="id_acc" data-value="{s.id_acc:.4f}">{s.id_acc:.1f}</td>'
            f'<td class="num" data-field="ood_acc" data-value="{s.ood_acc:.4f}">{ood}</td></tr>'
        )
    table = f'<table id="accuracy">{head}{"".join(rows)}</table>'
    n_runs = len(records)
    return (
        f'<p class="muted">{n_runs} run(s) from {source}; a point is the mean over the runs of '
        "one setting (held-out domains x seeds), with ± standard error where there are "
        "several.</p>" + _accuracy_chart(settings) + table
    )


def _accuracy_chart(settings: Sequence[Setting]) -> str:
    """OOD accuracy (%) against the teacher queries a setting used, one line per algorithm."""
    left, right, top, bottom, plot_w, plot_h = 60.0, 150.0, 12.0, 44.0, 560.0, 260.0
    width, height = left + plot_w + right, top + plot_h + bottom
    qticks = _nice_ticks(max(1.0, max(s.queries for s in settings)))
    ytop = 100.0

    def x(q: float) -> float:
        return left + q / qticks[-1] * plot_w

    def y(acc: float) -> float:
        return top + plot_h - acc / ytop * plot_h

    out = [_svg_open("accuracy-chart", width, height, "OOD accuracy against teacher queries used")]
    for v in range(0, 101, 20):
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
            f'stroke="#d9dee7" stroke-dasharray="{"none" if v == 0 else "2 3"}"/>'
            f'<text x="{left - 8}" y="{y(v) + 4:.1f}" font-size="11" fill="#5d6677" '
            f'text-anchor="end">{v}</text>'
        )
    for q in qticks:
        out.append(
            f'<text x="{x(q):.1f}" y="{top + plot_h + 16}" font-size="11" fill="#5d6677" '
            f'text-anchor="middle">{_tick_label(q)}</text>'
        )
    out.append(
        f'<text x="{left + plot_w / 2}" y="{height - 6}" font-size="12" fill="#5d6677" '
        'text-anchor="middle">teacher queries used (mean per run)</text>'
        f'<text x="14" y="{top + plot_h / 2}" font-size="12" fill="#5d6677" '
        f'text-anchor="middle" transform="rotate(-90 14 {top + plot_h / 2})">'
        "OOD accuracy (%)</text>"
    )
    algorithms = list(dict.fromkeys(s.algorithm for s in settings))
    legend_y = top + 6
    for i, alg in enumerate(algorithms):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        pts = sorted((s for s in settings if s.algorithm == alg), key=lambda s: s.queries)
        if len(pts) > 1:
            d = " ".join(
                f"{'M' if j == 0 else 'L'}{x(s.queries):.1f},{y(s.ood_acc):.1f}"
                for j, s in enumerate(pts)
            )
            out.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        for s in pts:
            cx, cy = x(s.queries), y(s.ood_acc)
            if s.ood_se:
                out.append(
                    f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(s.ood_acc - s.ood_se):.1f}" '
                    f'y2="{y(s.ood_acc + s.ood_se):.1f}" stroke="{colour}" stroke-width="1.5"/>'
                )
            out.append(
                f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="4.5" fill="{colour}" '
                f'data-algorithm="{_e(alg)}" data-views="{_e(s.views)}" '
                f'data-queries="{s.queries:.1f}" data-ood="{s.ood_acc:.4f}">'
                f"<title>{_e(alg)}, K={_e(s.views)}: {s.ood_acc:.1f} % OOD with "
                f"{_n(round(s.queries))} queries</title></circle>"
            )
            if len(pts) > 1 or s.views not in ("", "0"):
                out.append(
                    f'<text x="{cx + 6:.1f}" y="{cy - 6:.1f}" font-size="10" fill="{colour}">'
                    f"K={_e(s.views)}</text>"
                )
        ly = legend_y + i * 18
        out.append(
            f'<rect x="{left + plot_w + 16}" y="{ly - 9}" width="12" height="12" rx="2" '
            f'fill="{colour}"/><text x="{left + plot_w + 34}" y="{ly + 1}" font-size="12" '
            f'fill="#1d2330">{_e(alg)}</text>'
        )
    out.append("</svg>")
    return f"<figure>{''.join(out)}</figure>"
