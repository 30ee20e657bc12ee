"""``client-distiller report --html``: one self-contained file whose numbers are the ledger's.

Fast tests build a real budget ledger (SQLite, through ``BudgetLedger.record``) and check the
page: nothing external, every number equal to what raw SQL over the ledger says, text escaped.
The browser test (``test_report_html_browser.py``) opens a report of real vendor charges.
"""

from __future__ import annotations

import re
import sqlite3
from html.parser import HTMLParser
from pathlib import Path

import pytest

from client_distiller.cli import main
from client_distiller.report_html import (
    build_html,
    find_results,
    read_spend,
    saved_fraction,
    settings_of,
    write_html_report,
)
from client_distiller.results import RunRecord, append_record
from client_distiller.teacher import BudgetLedger


def make_ledger(cache: Path) -> None:
    """Two runs: a paid fetch (budget reported falling), then a run answered from the cache.

    5,376 views beside 7 class texts: the texts' bar must still be seen.
    """
    first = BudgetLedger(cache, run_id="first")
    for sent, remaining in [(2000, 8000), (2000, 6000), (1376, 4624)]:
        first.record(stage="fetch", purpose="train-views", endpoint="images", fingerprint="f",
                     sent=sent, charged=sent, budget_remaining=remaining)  # fmt: skip
    first.record(stage="fetch", purpose="class-texts", endpoint="texts", fingerprint="f",
                 sent=7, charged=7, budget_remaining=4617)  # fmt: skip
    first.record(stage="fetch", purpose="eval-images", endpoint="images", fingerprint="f",
                 sent=30, charged=0, budget_remaining=4617)  # replayed: sent, not charged  # fmt: skip
    first.close()
    second = BudgetLedger(cache, run_id="second")
    second.record(stage="run", purpose="train-views", endpoint="images", fingerprint="f",
                  cache_hits=5376)  # fmt: skip
    second.record(stage="run", purpose="class-texts", endpoint="texts", fingerprint="f",
                  cache_hits=7)  # fmt: skip
    second.close()


def sql(cache: Path, query: str) -> list[tuple]:
    db = sqlite3.connect(f"file:{cache / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        return db.execute(query).fetchall()
    finally:
        db.close()


def records() -> list[RunRecord]:
    rows = [  # algorithm, views, seed, ID acc, OOD acc, queries used
        ("zeroshot", 4, 0, 0.9, 0.8, 120),
        ("erm", 4, 0, 0.7, 0.3, 0),
        ("adip", 1, 0, 0.75, 0.5, 50),
        ("adip", 4, 0, 0.8, 0.6, 155),
        ("adip", 4, 1, 0.8, 0.7, 155),
    ]
    return [
        RunRecord(
            dataset="d",
            target="sketch",
            algorithm=a,
            views=k,
            seed=s,
            id_acc=i,
            ood_acc=o,
            per_domain={},
            queries_used=q,
        )
        for a, k, s, i, o, q in rows
    ]


class Page(HTMLParser):
    """Every tag with its attributes, and every element's text by its ``data-field``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.fields: dict[str, list[tuple[dict[str, str | None], str]]] = {}
        self._open: list[tuple[str, dict[str, str | None], list[str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag not in ("meta", "line", "path", "circle", "br"):
            self._open.append((tag, a, []))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            t, a, text = self._open.pop()
            if a.get("data-field"):
                self.fields.setdefault(str(a["data-field"]), []).append((a, "".join(text)))
            if self._open:
                self._open[-1][2].extend(text)
            if t == tag:
                return

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1][2].append(data)


def test_the_file_is_self_contained_and_its_numbers_are_the_ledgers(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    make_ledger(cache)
    path = write_html_report(tmp_path / "r" / "report.html", read_spend(cache), records())
    text = path.read_text(encoding="utf-8")
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left nothing behind
    page = Page(text)
    # Nothing to fetch: no script, no linked file, no URL but SVG's namespace name.
    assert not [t for t, _ in page.tags if t in ("script", "link", "img", "iframe", "object")]
    assert not [a for _, a in page.tags if "src" in a or "href" in a]
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) == {"http://www.w3.org/2000/svg"}
    assert "url(" not in text and "@import" not in text

    (sent, charged, hits), = sql(cache, "SELECT SUM(sent), SUM(charged), SUM(cache_hits) FROM events")  # fmt: skip
    cards = {k: v[0] for k, v in page.fields.items()}
    assert int(cards["sent"][0]["data-value"]) == sent == 5413
    assert int(cards["charged"][0]["data-value"]) == charged == 5383
    assert int(cards["cache_hits"][0]["data-value"]) == hits == 5383
    assert cards["sent"][1] == "5,413" and cards["cache_hits"][1] == "5,383"
    assert cards["saved"][1] == f"{100 * hits / (hits + sent):.1f} %"
    # the vendor's last report: the lowest of the last run that reported one
    assert int(cards["budget_remaining"][0]["data-value"]) == 4617
    assert cards["runs"][1] == "2"

    # Per (stage, purpose, endpoint): the table and the chart's bars both equal the ledger.
    expected = {
        (s, p, e): (a, b, c)
        for s, p, e, a, b, c in sql(
            cache,
            "SELECT stage, purpose, endpoint, SUM(sent), SUM(charged), SUM(cache_hits)"
            " FROM events GROUP BY stage, purpose, endpoint",
        )
    }
    rows: dict[tuple, dict[str, int]] = {}
    bars: dict[tuple, dict[str, int]] = {}
    row_key = None
    for tag, a in page.tags:
        if tag == "tr" and a.get("data-endpoint"):
            row_key = (a["data-stage"], a["data-purpose"], a["data-endpoint"])
            rows[row_key] = {}
        elif tag == "td" and a.get("data-field") and row_key is not None:
            rows[row_key][str(a["data-field"])] = int(str(a["data-value"]))
        elif tag == "tr":
            row_key = None
        if tag == "rect" and a.get("data-kind"):
            k = (a["data-stage"], a["data-purpose"], a["data-endpoint"])
            bars.setdefault(k, {})[str(a["data-kind"])] = int(str(a["data-value"]))
    assert {k: (v["sent"], v["charged"], v["cache_hits"]) for k, v in rows.items()} == expected
    assert {k: (v["sent"], v["cache_hits"]) for k, v in bars.items()} == {
        k: (v[0], v[2]) for k, v in expected.items()
    }
    # the 7 class texts are a visible bar next to 5,376 views, not a hairline
    widths = {
        (a["data-purpose"], a["data-kind"]): float(str(a["width"]))
        for t, a in page.tags
        if t == "rect" and a.get("data-stage") == "fetch"
    }
    assert widths[("class-texts", "sent")] >= 2.0

    # Accuracy against queries: one point per (algorithm, views), the mean of its runs.
    points = {
        (a["data-algorithm"], a["data-views"]): (float(str(a["data-queries"])), float(str(a["data-ood"])))
        for t, a in page.tags
        if t == "circle"
    }  # fmt: skip
    assert points == {
        ("zeroshot", "4"): (120.0, 80.0),
        ("erm", "4"): (0.0, 30.0),
        ("adip", "1"): (50.0, 50.0),
        ("adip", "4"): (155.0, pytest.approx(65.0)),
    }
    assert "65.0 ± 5.0" in text and "30.0 (n=1)" in text


def test_text_from_the_ledger_is_escaped(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ledger = BudgetLedger(cache)
    ledger.record(stage="<script>alert(1)</script>", purpose='a"b', endpoint="texts",
                  fingerprint="f", sent=1, charged=1)  # fmt: skip
    ledger.close()
    text = build_html(read_spend(cache))
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert 'data-purpose="a&quot;b"' in text


def test_without_results_or_budget_it_says_so(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ledger = BudgetLedger(cache)
    ledger.record(stage="fetch", purpose="p", endpoint="texts", fingerprint="f", sent=3)
    ledger.close()
    page = Page(build_html(read_spend(cache), results_path=tmp_path / "none.jsonl"))
    assert page.fields["budget_remaining"][0][1] == "unknown"
    assert any(a.get("id") == "no-results" for _, a in page.tags)


def test_settings_and_savings() -> None:
    assert saved_fraction(0, 0) is None and saved_fraction(3, 1) == 0.25
    by = {(s.algorithm, s.views): s for s in settings_of(records())}
    assert [(s.algorithm, s.views) for s in settings_of(records())] == [
        ("zeroshot", "4"), ("erm", "4"), ("adip", "1"), ("adip", "4")
    ]  # fmt: skip
    assert by[("adip", "4")].runs == 2 and by[("adip", "4")].ood_se == pytest.approx(5.0)
    assert by[("erm", "4")].ood_se is None


def test_find_results_prefers_the_folder_beside_the_cache(tmp_path: Path) -> None:
    demo, run_out = tmp_path / "demo", tmp_path / "experiment"
    assert find_results(demo / "cache", run_out) is None
    append_record(run_out / "results.jsonl", records()[0])
    assert find_results(demo / "cache", run_out) == run_out / "results.jsonl"
    append_record(demo / "results.jsonl", records()[0])
    assert find_results(demo / "cache", run_out) == demo / "results.jsonl"


def test_the_command_writes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache, results = tmp_path / "runs" / "cache", tmp_path / "runs" / "results.jsonl"
    make_ledger(cache)
    for r in records():
        append_record(results, r)
    out = tmp_path / "report.html"
    argv = ["report", "--cache-dir", str(cache), "--plot", str(tmp_path / "s.png")]
    assert main([*argv, "--html", str(out)]) == 0
    assert f"html report: {out}" in capsys.readouterr().out
    page = Page(out.read_text(encoding="utf-8"))
    assert sum(1 for t, _ in page.tags if t == "circle") == 4  # the results beside the cache
    assert main([*argv, "--html", str(out), "--results", str(tmp_path / "nope.jsonl")]) == 1
    assert "no run results at" in capsys.readouterr().err
