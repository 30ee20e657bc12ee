"""``/docs`` loads every asset from the vendor: no CDN, so it works offline.

In process: the served HTML names no external URL and every asset it names is served. In a
real headless chromium against a real vendor process, with every host name but the loopback
address unresolvable: the page renders the API (all operations) and requests nothing from
anywhere else; a screenshot is saved (its path is printed). There is no ``/redoc``: ReDoc's
bundle loads its logo from a CDN whatever it is told (see ``vendor_service/docs_assets.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.helpers.browser import Chromium, assert_local_only, chromium  # noqa: F401
from tests.helpers.vendor_process import VendorProcess, start_vendor
from vendor_service.docs_assets import ASSETS_URL, FAVICON, SWAGGER_CSS, SWAGGER_JS

_ATTR_URL = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']""")
_JS_URL = re.compile(r"""\burl\s*:\s*["']([^"']+)["']""")


def _named_urls(html: str) -> list[str]:
    return _ATTR_URL.findall(html) + _JS_URL.findall(html)


def _assert_no_external_url(html: str) -> None:
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", html, re.IGNORECASE), html
    for url in _named_urls(html):
        parts = urlsplit(url)
        assert parts.scheme in ("", "data") and not parts.netloc, url


def test_docs_html_names_only_the_vendors_own_assets(api) -> None:
    resp = api.client.get("/docs")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    html = resp.text
    _assert_no_external_url(html)
    named = _named_urls(html)
    for name in (SWAGGER_JS, SWAGGER_CSS, FAVICON):
        assert f"{ASSETS_URL}/{name}" in named, (name, named)
    assert "/openapi.json" in named
    for url in named:
        if url.startswith("data:"):
            continue
        got = api.client.get(url)
        assert got.status_code == 200, url
        # the real bundles, not an error page: Swagger UI's bundle is over a megabyte
        assert len(got.content) > 1000, url
    assert (
        api.client.get(f"{ASSETS_URL}/{SWAGGER_JS}")
        .headers["content-type"]
        .startswith(("application/javascript", "text/javascript"))
    )
    assert (
        api.client.get(f"{ASSETS_URL}/{SWAGGER_CSS}").headers["content-type"].startswith("text/css")
    )


def test_the_cdn_pages_are_gone_and_openapi_stays(api) -> None:
    assert api.app.docs_url is None and api.app.redoc_url is None
    assert api.client.get("/redoc").status_code == 404
    assert api.client.get("/docs/oauth2-redirect").status_code == 200
    assert api.client.get(f"{ASSETS_URL}/no-such-file.js").status_code == 404
    assert api.client.get(f"{ASSETS_URL}/../app.py").status_code == 404
    spec = api.client.get("/openapi.json").json()
    assert spec["info"]["title"] == "vendor-service"
    # the docs' own routes are not API operations
    assert not any(p.startswith("/docs") or p == "/redoc" for p in spec["paths"])


# -- in a real browser, against a real vendor process ---------------------------------------


@pytest.fixture(scope="module")
def live_vendor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VendorProcess]:
    vendor = start_vendor(tmp_path_factory.mktemp("docs-vendor"))
    yield vendor
    vendor.stop()


def _operations(vendor: VendorProcess) -> int:
    spec = httpx.get(vendor.base_url + "/openapi.json", timeout=30).json()
    return sum(len(item) for item in spec["paths"].values())


@pytest.mark.slow
def test_swagger_ui_renders_offline_from_the_vendor(
    live_vendor: VendorProcess,
    chromium: Chromium,  # noqa: F811
) -> None:
    chromium.open(live_vendor.base_url + "/docs")
    title = chromium.wait_for_css(".swagger-ui .info .title")
    assert "vendor-service" in title.text
    operations = _operations(live_vendor)
    chromium.wait_for(lambda _: len(chromium.css(".swagger-ui .opblock")) == operations)
    summaries = {e.text for e in chromium.css(".opblock-summary-path")}
    assert "/v1/embeddings/images" in summaries and "/v1/admin/keys" in summaries
    shot: Path = chromium.screenshot("docs-swagger-ui")
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    urls = chromium.requested_urls()
    assert_local_only(urls, live_vendor.base_url)
    assert any(u.endswith(f"{ASSETS_URL}/{SWAGGER_JS}") for u in urls)
    assert chromium.console_errors() == []
