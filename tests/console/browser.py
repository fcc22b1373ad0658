"""Debian's Chromium, headless, driven by selenium through Debian's chromedriver, and the
screenshots it keeps.

Both come from `deploy/local/tools.sh chromium`; a machine without them fails the console
tests with that command, it does not skip them. Chromium gets a fresh profile and the flags
that keep it off the network it would otherwise call home to (this machine reaches no such
host, and the refused connections slow every start).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parents[2]
# kept after the run (git-ignored under .run/): what the console looked like, page by page
SCREENSHOTS = ROOT / ".run" / "console-screenshots"
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # as root, Chromium refuses to start sandboxed
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1360,1100",
)


def require_chromium(chromium: Path = CHROMIUM, driver: Path = CHROMEDRIVER) -> None:
    missing = [str(p) for p in (chromium, driver) if not p.exists()]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} missing: run `bash deploy/local/tools.sh chromium`"
            " (Debian's chromium and chromium-driver)",
            pytrace=False,
        )


@contextmanager
def chromium(profile: Path) -> Iterator[webdriver.Chrome]:
    require_chromium()
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    # a driver path given: selenium's own driver manager (which downloads) is never asked
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: webdriver.Chrome, css: str, *, text: str | None = None) -> WebElement:
    """The first element matching `css` (containing `text`, if given), once the page shows it;
    fails after 30 s. After a click that navigates, wait for something only the next page
    has: the page being left still answers until the next one replaces it."""

    def found(d: webdriver.Chrome) -> WebElement | bool:
        for element in d.find_elements(By.CSS_SELECTOR, css):
            if text is None or text in element.text:
                return element
        return False

    # an element of the page being left goes stale under the probe: look again
    waiting = WebDriverWait(
        driver, 30, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    )
    element = waiting.until(
        found, f"no {css!r}{f' with {text!r}' if text else ''} on {driver.current_url}"
    )
    assert isinstance(element, WebElement)
    return element


def shoot(driver: webdriver.Chrome, name: str) -> Path:
    """Keep a screenshot of the page as `<name>.png`; assert it is a real, non-trivial PNG."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    path.unlink(missing_ok=True)
    # the whole page, not the window: Chromium's DevTools capture beyond the viewport
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    width = metrics["cssLayoutViewport"]["clientWidth"]
    height = max(metrics["cssContentSize"]["height"], metrics["cssLayoutViewport"]["clientHeight"])
    clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    assert width >= 1000, f"{path} is {width} pixels wide"
    assert height >= 600, f"{path} is {height} pixels high"
    assert len(data) > 10_000, f"{path} is {len(data)} bytes: a blank page?"
    return path


def wait_for_url(driver: webdriver.Chrome, part: str) -> None:
    """Until the browser is on a URL containing `part` (a form sent by GET has arrived)."""
    WebDriverWait(driver, 30, poll_frequency=0.1).until(
        lambda d: part in d.current_url, f"never on a URL with {part!r}: {driver.current_url}"
    )
