"""``/dashboard`` in a real headless chromium against a real vendor process with real charges.

The numbers read from the page (table cells and chart bars) equal the vendor's ledger as the
admin API reports it, and what the test itself spent. The admin sees every key; a key holder
signs in with its key and the page holds nothing of any other key. The token never appears in
a requested URL or in the vendor's access log. Screenshots are saved under the test's tmp dir
(their paths are printed).
"""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.helpers.browser import Chromium, assert_local_only, chromium  # noqa: F401
from tests.helpers.vendor_process import VendorProcess, start_vendor

pytestmark = pytest.mark.slow


def _post(vendor: VendorProcess, path: str, token: str, body: dict[str, Any]) -> int:
    request = urllib.request.Request(
        vendor.base_url + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def _png(color: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


class Keys:
    """The keys of the scenario: clear key and id per name, and what the test spent."""

    def __init__(self) -> None:
        self.clear: dict[str, str] = {}
        self.id: dict[str, str] = {}
        self.spent: Counter[str] = Counter()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VendorProcess, Keys]]:
    """A vendor with its access log on, three keys and real charges (and a refused one)."""
    vendor = start_vendor(tmp_path_factory.mktemp("dashboard-vendor"), access_log=True)
    keys = Keys()
    for name, budget, extra in [
        ("alpha", 500, {"rate_limit_rps": 5, "rate_limit_burst": 10}),
        ("<b>beta</b> & co", 300, {}),  # a name with markup: shown as text, never as HTML
        ("gamma", 4, {}),
    ]:
        created = vendor._call(
            "/v1/admin/keys", vendor.admin_token, {"name": name, "budget": budget, **extra}
        )
        keys.clear[name], keys.id[name] = created["key"], created["info"]["id"]

    def texts(name: str, n: int, expect: int = 200) -> None:
        got = _post(vendor, "/v1/embeddings/texts", keys.clear[name],
                    {"texts": [f"{name} {i}" for i in range(n)]})  # fmt: skip
        assert got == expect
        if got == 200:
            keys.spent[name] += n

    texts("alpha", 3)
    texts("alpha", 5)
    assert _post(vendor, "/v1/embeddings/images", keys.clear["alpha"],
                 {"images": [_png((200, 30, 30)), _png((20, 30, 200))]}) == 200  # fmt: skip
    keys.spent["alpha"] += 2
    texts("<b>beta</b> & co", 4)
    texts("gamma", 3)
    texts("gamma", 2, expect=402)  # over the budget: refused whole, nothing charged
    assert _post(vendor, f"/v1/admin/keys/{keys.id['gamma']}/revoke", vendor.admin_token, {}) == 200
    try:
        yield vendor, keys
    finally:
        vendor.stop()


def _ledger(vendor: VendorProcess) -> dict[str, dict[str, Any]]:
    """Per key id, as the admin API reports it: the key, and charged queries per hour bin."""
    listed = vendor._call("/v1/admin/keys", vendor.admin_token)["data"]
    out: dict[str, dict[str, Any]] = {}
    for key in listed:
        usage = vendor._call(f"/v1/admin/keys/{key['id']}/usage", vendor.admin_token,
                             params={"limit": 1000})  # fmt: skip
        hours: Counter[datetime] = Counter()
        for e in usage["entries"]:
            if e["status"] == "charged":
                at = datetime.fromisoformat(e["created_at"]).astimezone(timezone.utc)
                hours[at.replace(minute=0, second=0, microsecond=0)] += e["queries"]
        out[key["id"]] = {"key": key, "usage": usage, "hours": hours}
    return out


def _sign_in(chromium: Chromium, token: str) -> None:  # noqa: F811
    field = chromium.wait_for_css("#token")
    field.clear()
    field.send_keys(token)
    chromium.css("#login-form button[type=submit]")[0].click()


def _wait_ready(chromium: Chromium) -> None:  # noqa: F811
    chromium.wait_for(lambda _: chromium.js("return document.body.dataset.state") == "ready")


def _number(cell: Any) -> int:
    value = int(cell.get_attribute("data-value"))
    assert int(cell.text.replace(",", "")) == value  # what a person reads is the number
    return value


def _rows(chromium: Chromium) -> dict[str, dict[str, Any]]:  # noqa: F811
    rows = {}
    for tr in chromium.css("#keys tbody tr"):
        fields = tr.find_elements("css selector", "[data-field]")
        rows[tr.get_attribute("data-key-id")] = {f.get_attribute("data-field"): f for f in fields}
    return rows


def _bars(chromium: Chromium) -> dict[tuple[str, datetime], int]:  # noqa: F811
    bars: dict[tuple[str, datetime], int] = {}
    for rect in chromium.css("#usage-chart rect.bar"):
        at = datetime.fromisoformat(rect.get_attribute("data-bin"))
        bars[(rect.get_attribute("data-key-id"), at)] = int(rect.get_attribute("data-count"))
    return bars


def test_the_admin_sees_every_key_as_the_ledger_has_it(scenario, chromium: Chromium) -> None:  # noqa: F811
    vendor, keys = scenario
    chromium.open(vendor.base_url + "/dashboard")
    _sign_in(chromium, vendor.admin_token)
    _wait_ready(chromium)
    ledger = _ledger(vendor)
    rows = _rows(chromium)
    assert set(rows) == set(ledger) == set(keys.id.values())
    default_rps = ledger[keys.id["gamma"]]["key"]["rate_limit_rps"]
    for name, key_id in keys.id.items():
        row, key, usage = rows[key_id], ledger[key_id]["key"], ledger[key_id]["usage"]
        assert row["name"].text == name  # markup shown as typed
        assert row["name"].find_elements("css selector", "b") == []
        assert row["id"].text == key_id
        assert _number(row["used"]) == key["budget"]["used"] == keys.spent[name]
        assert _number(row["limit"]) == key["budget"]["limit"]
        assert _number(row["remaining"]) == key["budget"]["remaining"]
        assert _number(row["requests"]) == usage["requests"]
        assert _number(row["texts"]) == usage["queries_by_endpoint"].get("texts", 0)
        assert _number(row["images"]) == usage["queries_by_endpoint"].get("images", 0)
        assert float(row["rate"].get_attribute("data-rps")) == key["rate_limit_rps"]
        assert int(row["rate"].get_attribute("data-burst")) == key["rate_limit_burst"]
        assert _number(row["series"]) == sum(ledger[key_id]["hours"].values())
    assert rows[keys.id["alpha"]]["rate"].text == "5 req/s, burst 10"
    assert rows[keys.id["gamma"]]["rate"].text.startswith(f"{default_rps:g} req/s")
    assert _number(rows[keys.id["gamma"]]["used"]) == 3  # the refused request charged nothing
    status = {k: rows[v]["status"].text for k, v in keys.id.items()}
    assert status == {"alpha": "active", "<b>beta</b> & co": "active", "gamma": "revoked"}
    # The chart: one bar segment per key and hour, each the ledger's count for that hour.
    expected = {(k, h): n for k, v in ledger.items() for h, n in v["hours"].items() if n}
    assert _bars(chromium) == expected
    cards = {c.get_attribute("data-field"): c for c in chromium.css(".card .value")}
    assert _number(cards["keys"]) == 3
    assert _number(cards["used"]) == sum(keys.spent.values())
    assert _number(cards["limit"]) == sum(v["key"]["budget"]["limit"] for v in ledger.values())
    shot = chromium.screenshot("dashboard-admin-hourly")
    assert shot.stat().st_size > 10_000

    chromium.css('[data-period="day"]')[0].click()
    chromium.wait_for(lambda _: chromium.css('[data-period="day"][aria-pressed="true"]'))
    _wait_ready(chromium)
    days = {
        (k, h.replace(hour=0)): 0 for k, v in ledger.items() for h in v["hours"]
    }  # fmt: skip
    for (k, h), n in expected.items():
        days[(k, h.replace(hour=0))] += n
    assert _bars(chromium) == {k: n for k, n in days.items() if n}
    chromium.screenshot("dashboard-admin-daily")

    assert chromium.console_errors() == []
    urls = chromium.requested_urls()
    assert_local_only(urls, vendor.base_url)
    assert any("/dashboard/api/usage" in u for u in urls)
    assert not any(vendor.admin_token in u for u in urls)
    # The token stays in this tab's sessionStorage, and signing out forgets it.
    assert chromium.js("return sessionStorage.length") == 1
    assert chromium.js("return localStorage.length") == 0
    assert chromium.driver.get_cookies() == []
    chromium.css("#sign-out")[0].click()
    chromium.wait_for_css("#login-form")
    assert chromium.js("return sessionStorage.length") == 0
    log = vendor.log_path.read_text(errors="replace")
    assert "GET /dashboard/api/usage?period=" in log  # the access log is on ...
    assert vendor.admin_token not in log  # ... and the token is not in it


def test_a_key_holder_sees_only_its_own_key(scenario, chromium: Chromium) -> None:  # noqa: F811
    vendor, keys = scenario
    chromium.open(vendor.base_url + "/dashboard")
    _sign_in(chromium, keys.clear["alpha"])
    _wait_ready(chromium)
    alpha = keys.id["alpha"]
    ledger = _ledger(vendor)[alpha]
    rows = _rows(chromium)
    assert list(rows) == [alpha]
    assert _number(rows[alpha]["used"]) == ledger["key"]["budget"]["used"] == keys.spent["alpha"]
    assert _number(rows[alpha]["remaining"]) == ledger["key"]["budget"]["remaining"]
    assert {k for k, _ in _bars(chromium)} == {alpha}
    cards = {c.get_attribute("data-field"): c for c in chromium.css(".card .value")}
    assert "keys" not in cards and cards["rate"].text == "5 req/s, burst 10"
    page = chromium.driver.page_source
    for name, key_id in keys.id.items():
        if name != "alpha":
            assert key_id not in page and "beta" not in page and "gamma" not in page
    # Asking the JSON route for another key from the page itself: refused.
    status = chromium.driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        fetch(`dashboard/api/usage?key_id=${arguments[0]}`, {
          headers: {Authorization: `Bearer ${sessionStorage.getItem("vendor-dashboard-token")}`},
        }).then((r) => done(r.status), (e) => done(String(e)));
        """,
        keys.id["gamma"],
    )
    assert status == 403
    chromium.screenshot("dashboard-key-holder")
    urls = chromium.requested_urls()
    assert_local_only(urls, vendor.base_url)
    assert not any(keys.clear["alpha"] in u for u in urls)
    assert keys.clear["alpha"] not in vendor.log_path.read_text(errors="replace")


def test_a_wrong_token_stays_at_the_form(scenario, chromium: Chromium) -> None:  # noqa: F811
    vendor, _ = scenario
    chromium.open(vendor.base_url + "/dashboard")
    _sign_in(chromium, "vk_not-a-key")
    chromium.wait_for(lambda _: chromium.css("#login-error")[0].text != "")
    assert "unknown or revoked" in chromium.css("#login-error")[0].text
    assert chromium.css("#report")[0].is_displayed() is False
    assert chromium.js("return sessionStorage.length") == 0
    path: Path = chromium.screenshot("dashboard-wrong-token")
    assert path.is_file()
