"""``report --html`` of real vendor charges, opened in a real headless chromium.

A real vendor process charges a real ``fetch``; a second fetch is answered from the cache.
The page's numbers, read from the DOM, equal the client's ledger (raw SQL) and the vendor's own
count of the key's budget; the file loads nothing but itself. A screenshot is saved under the
test's tmp dir (its path is printed).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from client_distiller.cli import main
from client_distiller.results import RunRecord, append_record
from tests.client_distiller.conftest import make_dataset
from tests.helpers.browser import Chromium, assert_local_only, chromium  # noqa: F401
from tests.helpers.vendor_process import VendorProcess, start_vendor

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VendorProcess]:
    v = start_vendor(tmp_path_factory.mktemp("report-vendor"))
    yield v
    v.stop()


def _sums(cache: Path) -> dict[tuple[str, str, str], tuple[int, int, int]]:
    db = sqlite3.connect(f"file:{cache / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT stage, purpose, endpoint, SUM(sent), SUM(charged), SUM(cache_hits)"
            " FROM events GROUP BY stage, purpose, endpoint"
        ).fetchall()
    finally:
        db.close()
    return {(s, p, e): (a, b, c) for s, p, e, a, b, c in rows}


def _value(element) -> int:
    value = int(element.get_attribute("data-value"))
    assert int(element.text.replace(",", "")) == value  # what a person reads is the number
    return value


def test_the_html_report_shows_the_ledger(
    vendor: VendorProcess,
    chromium: Chromium,  # noqa: F811
    tmp_path: Path,
) -> None:
    key = vendor.create_key(5000)
    data = make_dataset(tmp_path / "data")
    cache, out = tmp_path / "runs" / "cache", tmp_path / "runs"
    fetch = ["fetch", "--data", str(data), "--target-domain", "sketch", "--views", "2",
             "--endpoint", vendor.base_url, "--api-key", key, "--cache-dir", str(cache)]  # fmt: skip
    assert main(fetch) == 0
    assert main(fetch) == 0  # answered from the cache: cache hits, nothing charged
    base = {"dataset": str(data), "target": "sketch", "per_domain": {}}
    for algorithm, views, seed, ood, queries in [
        ("zeroshot", 2, 0, 0.62, 40), ("erm", 2, 0, 0.35, 0), ("kd", 2, 0, 0.41, 58),
        ("adip", 1, 0, 0.44, 34), ("adip", 2, 0, 0.50, 58), ("adip", 2, 1, 0.54, 58),
    ]:  # fmt: skip
        append_record(out / "results.jsonl", RunRecord(algorithm=algorithm, views=views,
                      seed=seed, id_acc=ood + 0.2, ood_acc=ood, queries_used=queries, **base))  # fmt: skip
    report = tmp_path / "report.html"
    assert main(["report", "--cache-dir", str(cache), "--html", str(report)]) == 0

    chromium.open(report.as_uri())
    chromium.wait_for_css("#spend-chart")
    sums = _sums(cache)
    cards = {c.get_attribute("data-field"): c for c in chromium.css(".card .value")}
    assert _value(cards["sent"]) == sum(v[0] for v in sums.values()) > 0
    assert _value(cards["charged"]) == sum(v[1] for v in sums.values())
    assert _value(cards["cache_hits"]) == sum(v[2] for v in sums.values()) > 0
    # the second fetch asked for exactly what the first paid for
    assert _value(cards["cache_hits"]) == _value(cards["sent"])
    assert cards["saved"].text == "50.0 %"
    budget = vendor.usage(key)["budget"]
    assert _value(cards["budget_remaining"]) == budget["remaining"] == 5000 - budget["used"]
    assert budget["used"] == _value(cards["charged"])  # the vendor's own count agrees

    rows = {}
    for tr in chromium.css("#spend tr[data-endpoint]"):
        cells = {
            td.get_attribute("data-field"): td for td in tr.find_elements("css selector", "td")
        }
        key_ = (tr.get_attribute("data-stage"), tr.get_attribute("data-purpose"),
                tr.get_attribute("data-endpoint"))  # fmt: skip
        rows[key_] = (_value(cells["sent"]), _value(cells["charged"]), _value(cells["cache_hits"]))
    assert rows == sums
    bars = {}
    for rect in chromium.css("#spend-chart rect.bar"):
        k = (rect.get_attribute("data-stage"), rect.get_attribute("data-purpose"),
             rect.get_attribute("data-endpoint"), rect.get_attribute("data-kind"))  # fmt: skip
        bars[k] = int(rect.get_attribute("data-value"))
        if bars[k]:  # every count that is not zero is drawn as a bar a person can see
            assert rect.size["width"] >= 2
    assert bars == {
        (*k, kind): v[i] for k, v in sums.items() for kind, i in (("sent", 0), ("cache_hits", 2))
    }
    points = {(p.get_attribute("data-algorithm"), p.get_attribute("data-views"))
              for p in chromium.css("#accuracy-chart circle.point")}  # fmt: skip
    assert points == {("zeroshot", "2"), ("erm", "2"), ("kd", "2"), ("adip", "1"), ("adip", "2")}
    adip = chromium.css('#accuracy tr[data-algorithm="adip"][data-views="2"] td')
    assert [td.text for td in adip][-1] == "52.0 ± 2.0"

    shot = chromium.screenshot("report-html")
    assert shot.stat().st_size > 10_000
    assert_local_only(chromium.requested_urls(), report.as_uri())
    assert chromium.console_errors() == []
