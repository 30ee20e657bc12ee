"""A real headless browser for page tests: Debian's ``chromium`` driven by ``chromium-driver``.

Selenium talks to ``/usr/bin/chromedriver``, which starts ``/usr/bin/chromium``; nothing is
downloaded (Selenium Manager is never asked: both paths are given). The browser runs offline:
every host name but the loopback address fails to resolve, and every URL the page requested
is recorded (the DevTools network log) so a test can assert that nothing left the machine.

    def test_page(chromium: Chromium) -> None:
        chromium.open(base_url + "/docs")
        chromium.wait_for_css(".swagger-ui .opblock")
        chromium.screenshot("docs")             # saved under the test's tmp dir, path printed
        assert_local_only(chromium.requested_urls(), base_url)

Without chromium the fixture skips with the reason; with ``CI`` set it fails instead, since
``.ci/run`` installs chromium and a skip there would hide a missing browser.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

#: Flags for a headless chromium run as root in a container, quiet and offline.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # root: chromium's sandbox refuses to start otherwise
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    # offline: no name resolves but the loopback address the servers under test listen on
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--window-size=1280,900",
]

#: URL schemes that load nothing from the network.
LOCAL_SCHEMES = {"data", "blob", "about", "chrome-error", "chrome"}


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).is_file():
            return f"{path} is missing (apt-get install -y {package}; .ci/run installs it)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is missing (pip install -e '.[dev]')"
    return None


class Chromium:
    """One headless chromium session (a fresh profile) and where its screenshots go.

    Args:
        profile_dir: the ``--user-data-dir`` (fresh, so no state leaks between tests).
        screenshot_dir: where :meth:`screenshot` writes.
        announce: called with each screenshot's path (prints it in the test report).
    """

    def __init__(
        self, profile_dir: Path, screenshot_dir: Path, announce: Callable[[Path], None]
    ) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        self.screenshot_dir = screenshot_dir
        self._announce = announce
        self._urls: list[str] = []
        self._console: list[dict[str, Any]] = []
        self.driver = webdriver.Chrome(
            service=Service(executable_path=CHROMEDRIVER), options=options
        )
        self.driver.set_page_load_timeout(60)

    def open(self, url: str) -> None:
        """Load ``url`` and wait for its ``load`` event; requests are recorded from here on."""
        self._drain_logs()
        self._urls.clear()  # the blank start page's own loads are the browser's, not the page's
        self.driver.get(url)

    def wait_for(self, condition: Callable[[Any], Any], timeout: float = 30.0) -> Any:
        """Wait until ``condition(driver)`` is truthy; fail with the page's errors otherwise."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(condition)
        except TimeoutException:
            self.screenshot("timeout")
            pytest.fail(
                f"page condition not met in {timeout:g} s at {self.driver.current_url}; "
                f"console: {self.console_errors()}"
            )

    def wait_for_css(self, selector: str, timeout: float = 30.0) -> Any:
        """Wait until an element matches ``selector`` and is displayed; returns it."""
        from selenium.webdriver.common.by import By

        def shown(driver: Any) -> Any:
            found = driver.find_elements(By.CSS_SELECTOR, selector)
            return next((e for e in found if e.is_displayed()), None)

        return self.wait_for(shown, timeout)

    def css(self, selector: str) -> list[Any]:
        """Every element matching ``selector``."""
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def js(self, script: str, *args: Any) -> Any:
        """Run ``script`` in the page (``return`` gives a value back)."""
        return self.driver.execute_script(script, *args)

    def screenshot(self, name: str) -> Path:
        """Save the whole page (not just the window) as ``<screenshot_dir>/<name>.png``."""
        self.screenshot_dir.mkdir(parents=True, exist_ok=True)
        path = self.screenshot_dir / f"{name}.png"
        # DevTools' own capture of the full layout: resizing the window would leave out what
        # the browser's frame takes from it, and a wide table's overflow.
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        content, view = metrics["cssContentSize"], metrics["cssLayoutViewport"]
        clip = {
            "x": 0,
            "y": 0,
            "width": max(content["width"], view["clientWidth"]),
            "height": min(max(content["height"], view["clientHeight"]), 10_000),
            "scale": 1,
        }
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        self._announce(path)
        return path

    def _drain_logs(self) -> None:
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                self._urls.append(message["params"]["request"]["url"])
        self._console += self.driver.get_log("browser")

    def requested_urls(self) -> list[str]:
        """Every URL the browser requested so far (pages, scripts, styles, fetches, images)."""
        self._drain_logs()
        return list(self._urls)

    def console_errors(self) -> list[str]:
        """The console's error messages so far (script errors, refused loads, CSP reports)."""
        self._drain_logs()
        return [e["message"] for e in self._console if e.get("level") == "SEVERE"]

    def close(self) -> None:
        """Quit the browser and its driver."""
        self.driver.quit()


def assert_local_only(urls: list[str], origin: str) -> None:
    """Every URL is on ``origin`` (scheme, host and port) or loads nothing (``data:`` ...)."""
    want = urlsplit(origin)
    outside = [
        u
        for u in urls
        if urlsplit(u).scheme not in LOCAL_SCHEMES
        and (urlsplit(u).scheme, urlsplit(u).netloc) != (want.scheme, want.netloc)
    ]
    assert urls, "the browser requested nothing"
    assert not outside, f"requests that left {origin}: {outside}"


@pytest.fixture
def chromium(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Chromium]:
    """A fresh headless chromium; screenshots go to ``<tmp_path>/screenshots`` (path printed)."""
    reason = chromium_missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {reason}")
        pytest.skip(f"no headless browser here: {reason}")
    capture = request.config.pluginmanager.get_plugin("capturemanager")

    def announce(path: Path) -> None:
        request.node.user_properties.append(("screenshot", str(path)))
        line = f"\nscreenshot ({request.node.name}): {path}"
        if capture is None:
            print(line)
            return
        with capture.global_and_fixture_disabled():  # shown under -q too, as it happens
            print(line, flush=True)

    profile = tmp_path / "chromium-profile"
    browser = Chromium(profile, tmp_path / "screenshots", announce)
    try:
        yield browser
    finally:
        browser.close()
        shutil.rmtree(profile, ignore_errors=True)
