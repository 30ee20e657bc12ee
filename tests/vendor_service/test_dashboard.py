"""``/dashboard`` in process: a self-contained page, and its JSON under the API's access rules.

The admin token sees every key; an API key sees its own and nothing of any other, whatever
query parameter names another key. The numbers are the ledger's (``Store.get_key`` and the
ledger rows), and the per-bin series counts charged queries only.
"""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from vendor_service.dashboard import summary
from vendor_service.dashboard.routes import ASSETS, CONTENT_SECURITY_POLICY
from vendor_service.dashboard.summary import bin_counts, bin_starts
from vendor_service.metering import LedgerRow

from .conftest import ADMIN

ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}
STATIC = Path(__file__).resolve().parents[2] / "vendor_service" / "dashboard" / "static"
USAGE = "/dashboard/api/usage"


def _charge_texts(api, headers: dict[str, str], n: int) -> None:
    r = api.client.post("/v1/embeddings/texts", json={"texts": [f"t{i}" for i in range(n)]},
                        headers=headers)  # fmt: skip
    assert r.status_code == 200, r.text


def _by_id(body: dict) -> dict[str, dict]:
    return {k["key"]["id"]: k for k in body["keys"]}


# -- the page --------------------------------------------------------------------------------


def test_page_and_assets_load_nothing_from_elsewhere(api) -> None:
    page = api.client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # The browser enforces it too: only the vendor's own scripts, styles and fetches.
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert (
        "default-src 'none'" in CONTENT_SECURITY_POLICY and "unsafe" not in CONTENT_SECURITY_POLICY
    )
    assert page.headers["referrer-policy"] == "no-referrer"
    html = page.text
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}", html, re.IGNORECASE)
    assert "<style" not in html and not re.search(r"<script>|\sstyle=|\son[a-z]+=", html)
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert set(urls) == {
        "dashboard/static/dashboard.css",
        "dashboard/static/dashboard.js",
        "data:,",
    }
    for url in urls:
        if url.startswith("data:"):
            continue
        assert not urlsplit(url).scheme and not urlsplit(url).netloc
        got = api.client.get("/" + url)  # relative to /dashboard: /dashboard/static/...
        assert got.status_code == 200, url
        assert got.headers["content-type"].startswith(ASSETS[url.rsplit("/", 1)[1]])
    js = api.client.get("/dashboard/static/dashboard.js").text
    # the SVG namespace is a name, not a fetch; nothing else names another origin
    assert re.findall(r"https?://[^\s\"'`]+", js) == ["http://www.w3.org/2000/svg"]
    # key names are the admin's free text: the script never writes HTML from data
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", js)
    assert "sessionStorage" in js and "localStorage" not in js and "cookie" not in js
    css = api.client.get("/dashboard/static/dashboard.css").text
    assert "url(" not in css and "@import" not in css
    assert api.client.get("/dashboard/static/../routes.py").status_code == 404
    assert api.client.get("/dashboard/static/index.html").status_code == 404


def test_the_page_holds_no_data(api) -> None:
    _, _, key_id = api.new_key(10, name="secret-project")
    html = api.client.get("/dashboard").text
    assert key_id not in html and "secret-project" not in html


def test_the_static_files_ship_in_the_wheel() -> None:
    import tomllib

    pyproject = tomllib.loads((STATIC.parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["*"]
    files = sorted(p for p in STATIC.iterdir() if p.is_file())
    assert {p.name for p in files} == {"index.html", *ASSETS}
    for path in files:
        assert any(path.match(p) for p in patterns), (path.name, patterns)


# -- access rules ----------------------------------------------------------------------------


def test_admin_sees_every_key_with_the_ledgers_numbers(api) -> None:
    _, ha, ida = api.new_key(100, name="alpha", rate_limit_rps=2.5, rate_limit_burst=7)
    _, hb, idb = api.new_key(50, name="beta")
    _, hc, idc = api.new_key(20, name="gamma")
    _charge_texts(api, ha, 3)
    _charge_texts(api, ha, 4)
    _charge_texts(api, hb, 5)
    _charge_texts(api, hc, 1)
    assert api.client.post(f"/v1/admin/keys/{idc}/revoke", headers=ADMIN_H).status_code == 200
    # A charge refunded (its answer never reached the client) counts nowhere.
    api.store.charge(idb, 6, request_id="req_refunded", endpoint="texts", owner="test")
    api.store.refund(idb, "req_refunded")

    r = api.client.get(USAGE, headers=ADMIN_H)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["role"] == "admin" and body["period"] == "hour" and body["bin_seconds"] == 3600
    assert len(body["bin_starts"]) == 24
    keys = _by_id(body)
    assert list(keys) == [ida, idb, idc]
    defaults = api.app.state.settings.rate_limit
    for key_id, used, rps, burst in [
        (ida, 7, 2.5, 7),
        (idb, 5, defaults.rps, defaults.burst),
        (idc, 1, defaults.rps, defaults.burst),
    ]:
        k, record = keys[key_id], api.store.get_key(key_id)
        assert record.used == used
        assert k["key"]["budget"] == {
            "limit": record.limit, "used": record.used, "remaining": record.remaining
        }  # fmt: skip
        assert (k["key"]["rate_limit_rps"], k["key"]["rate_limit_burst"]) == (rps, burst)
        assert k["queries_by_endpoint"] == {"texts": used}
        assert sum(k["series"]) == used
        assert k["series"][-1] + k["series"][-2] == used  # charged this hour (or just before)
    assert keys[ida]["requests"] == 2 and keys[idc]["key"]["revoked"] is True
    assert keys[idb]["key"]["budget"]["remaining"] == 45  # the refund gave the 6 back


def test_a_key_sees_only_its_own_whatever_it_asks_for(api) -> None:
    _, ha, ida = api.new_key(100, name="alpha")
    _, hb, idb = api.new_key(50, name="beta-other")
    _charge_texts(api, ha, 2)
    _charge_texts(api, hb, 9)

    own = api.client.get(USAGE, headers=ha)
    assert own.status_code == 200 and own.json()["role"] == "key"
    assert list(_by_id(own.json())) == [ida]
    assert own.json()["keys"][0]["key"]["budget"]["used"] == 2
    assert api.client.get(USAGE, params={"key_id": ida}, headers=ha).status_code == 200

    # Naming the other key: refused, with the same answer as for a key that does not exist.
    refused = api.client.get(USAGE, params={"key_id": idb}, headers=ha)
    missing = api.client.get(USAGE, params={"key_id": "key_0000000000000000"}, headers=ha)
    assert refused.status_code == missing.status_code == 403
    assert refused.json()["error"]["message"] == missing.json()["error"]["message"]
    # Any other parameter name is ignored: still the caller's own key, nothing of the other.
    for name in ("key", "id", "key_ids", "keyId", "key-id", "owner", "name", "as", "admin"):
        for value in (idb, "beta-other", ADMIN, "*"):
            r = api.client.get(USAGE, params={name: value, "period": "day"}, headers=ha)
            assert r.status_code == 200, (name, value, r.text)
            assert list(_by_id(r.json())) == [ida]
            assert idb not in r.text and "beta-other" not in r.text
    # The path is not a way in either.
    assert api.client.get(f"{USAGE}/{idb}", headers=ha).status_code == 404
    assert api.client.get(f"/v1/admin/keys/{idb}/usage", headers=ha).status_code == 403


def test_the_admin_may_narrow_to_one_key(api) -> None:
    api.new_key(10, name="alpha")
    _, _, idb = api.new_key(10, name="beta")
    r = api.client.get(USAGE, params={"key_id": idb}, headers=ADMIN_H)
    assert r.status_code == 200 and list(_by_id(r.json())) == [idb]
    assert api.client.get(USAGE, params={"key_id": "nope"}, headers=ADMIN_H).status_code == 404


def test_no_token_a_wrong_one_or_a_revoked_key_reads_nothing(api) -> None:
    _, h, key_id = api.new_key(10)
    assert api.client.get(USAGE).status_code == 401
    for token in ("wrong", ADMIN + "x", "vk_" + "a" * 43):
        r = api.client.get(USAGE, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401 and key_id not in r.text
    assert api.client.get(USAGE, headers={"Authorization": ADMIN}).status_code == 401  # no scheme
    assert api.client.post(f"/v1/admin/keys/{key_id}/revoke", headers=ADMIN_H).status_code == 200
    assert api.client.get(USAGE, headers=h).status_code == 401
    assert api.client.get(USAGE, params={"period": "week"}, headers=ADMIN_H).status_code == 422


def test_daily_bins(api) -> None:
    _, h, _ = api.new_key(10)
    _charge_texts(api, h, 3)
    body = api.client.get(USAGE, params={"period": "day"}, headers=h).json()
    assert body["bin_seconds"] == 86400 and len(body["bin_starts"]) == 30
    starts = [datetime.fromisoformat(s) for s in body["bin_starts"]]
    assert all(s.hour == 0 and s.minute == 0 for s in starts)
    assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(starts))
    assert body["keys"][0]["series"][-1] == 3  # (or 0 and 3 just after midnight)


def test_the_series_pages_through_a_long_ledger(api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summary, "PAGE", 3)  # 10 requests: 4 pages
    _, h, _ = api.new_key(100)
    for n in range(1, 11):
        _charge_texts(api, h, n % 3 + 1)
    expected = sum(n % 3 + 1 for n in range(1, 11))
    body = api.client.get(USAGE, headers=h).json()
    assert sum(body["keys"][0]["series"]) == expected == body["keys"][0]["key"]["budget"]["used"]


# -- the binning, as pure functions ----------------------------------------------------------


def _row(seq: int, at: datetime, queries: int, status: str = "charged") -> LedgerRow:
    return LedgerRow(seq, f"req_{seq}", at, "texts", queries, status, None)  # type: ignore[arg-type]


def test_bin_starts_end_with_the_current_bin() -> None:
    now = datetime(2026, 3, 4, 12, 34, 56, tzinfo=timezone.utc)
    hours = bin_starts("hour", now)
    assert len(hours) == 24 and hours[-1] == datetime(2026, 3, 4, 12, tzinfo=timezone.utc)
    assert hours[0] == datetime(2026, 3, 3, 13, tzinfo=timezone.utc)
    days = bin_starts("day", now)
    assert len(days) == 30 and days[-1] == datetime(2026, 3, 4, tzinfo=timezone.utc)
    assert days[0] == datetime(2026, 2, 3, tzinfo=timezone.utc)
    # a naive time is taken as UTC
    assert bin_starts("hour", now.replace(tzinfo=None)) == hours


def test_bin_counts_count_charged_rows_in_their_bin() -> None:
    t0 = datetime(2026, 3, 4, 10, tzinfo=timezone.utc)
    starts = [t0, t0 + timedelta(hours=1), t0 + timedelta(hours=2)]
    rows = [
        _row(1, t0 - timedelta(seconds=1), 100),  # before the window: left out
        _row(2, t0, 1),
        _row(3, t0 + timedelta(minutes=59, seconds=59), 2),
        _row(4, t0 + timedelta(hours=1), 4),
        _row(5, t0 + timedelta(hours=1, minutes=5), 8, "refunded"),  # refunded: left out
        _row(6, t0 + timedelta(hours=2, minutes=30), 16),
        _row(7, t0 + timedelta(hours=3, minutes=1), 32),  # a clock ahead: the last bin
        _row(8, (t0 + timedelta(minutes=30)).replace(tzinfo=None), 64),  # naive: UTC
    ]
    assert bin_counts(rows, starts, timedelta(hours=1)) == [1 + 2 + 64, 4, 16 + 32]


# -- the API's throttles hold on the dashboard too --------------------------------------------


def test_wrong_tokens_on_the_dashboard_are_throttled_like_the_api(make_api) -> None:
    with make_api(rate_limit={"failed_auth_rps": 0.01, "failed_auth_burst": 5}) as api:
        statuses = [
            api.client.get(USAGE, headers={"Authorization": f"Bearer vk_wrong{i}"}).status_code
            for i in range(8)
        ]
        assert statuses == [401] * 5 + [429] * 3
        # one count per address, whichever route the guesses came through
        r = api.client.get("/v1/usage", headers={"Authorization": "Bearer vk_other"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert api.client.get(USAGE, headers=ADMIN_H).status_code == 200  # the admin is not


def test_dashboard_reads_share_the_usage_bucket_of_their_key(make_api) -> None:
    with make_api(rate_limit={"usage_rps": 0.01, "usage_burst": 3}) as api:
        _, h, _ = api.new_key(100)
        got = [api.client.get(USAGE, headers=h).status_code for _ in range(2)]
        got.append(api.client.get("/v1/usage", headers=h).status_code)
        got.append(api.client.get(USAGE, headers=h).status_code)
        assert got == [200, 200, 200, 429]
        _, h2, _ = api.new_key(100)
        assert api.client.get(USAGE, headers=h2).status_code == 200  # per key
