"""`dvc plots show` and `dvc plots diff` pages render in a real browser with networking off.

DVC's default page loads vega from a CDN and stays blank offline; .dvc/offline_plots.html inlines
the libraries. Headless Chromium (Debian's chromium + chromium-driver; `make browser` installs them)
opens the pages from disk with the network emulated offline and every host unresolvable, and every
chart must draw, every image load, and no script error appear. A page with DVC's CDN tags is the
control: under the same conditions it must draw nothing, or the test would not be offline at all.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from support.results_repo import results_repo, run

CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)
DRAWN = """return Array.from(document.querySelectorAll('.vega-embed')).map(div => {
    const el = div.querySelector('canvas, svg');
    return el ? el.getBoundingClientRect().width * el.getBoundingClientRect().height : 0; });"""


def find_browser() -> tuple[str, str]:
    chrome = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    if not (chrome and driver):
        why = "headless Chromium and chromedriver are not on PATH (`make browser` installs them on Debian)"
        if os.environ.get("E2E_REQUIRE_BROWSER") == "1":  # set by .ci/run: CI never passes without this check
            pytest.fail(why)
        pytest.skip(why)
    return chrome, driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chrome, driver_path = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for flag in (*CHROME_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chrome-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return results_repo(tmp_path_factory, "plots")


def open_page(browser, page: Path, expected: int, timeout: float = 30.0) -> tuple[list[float], list[dict]]:
    """Load the page from disk; wait until `expected` charts have drawn (or time out)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(page.as_uri())
    try:
        WebDriverWait(browser, timeout).until(lambda d: sum(a > 0 for a in d.execute_script(DRAWN)) >= expected)
    except TimeoutException:
        pass
    return browser.execute_script(DRAWN), browser.get_log("browser")


def specs(html: str) -> list[dict]:
    """The Vega-Lite specs DVC embedded in the page (`var spec = {...};`, one per chart)."""
    decoder = json.JSONDecoder()
    return [decoder.raw_decode(html, i + len("var spec = "))[0] for i in find_all(html, "var spec = ")]


def find_all(text: str, sub: str) -> list[int]:
    out, i = [], text.find(sub)
    while i >= 0:
        out.append(i)
        i = text.find(sub, i + 1)
    return out


def revisions(spec: dict) -> set[str]:
    return {row.get("rev") for row in spec["data"]["values"]}


def screenshot(browser, path: Path) -> None:
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1400, min(int(height) + 100, 12000))
    browser.save_screenshot(str(path))
    browser.set_window_size(1400, 1000)


@pytest.mark.parametrize("command", [["show"], ["diff", "HEAD"]], ids=["show", "diff"])
def test_plots_page_renders_offline(repo, browser, command, tmp_path):
    from PIL import Image

    out = tmp_path / "dvc_plots"
    run([sys.executable, "-m", "dvc", "plots", *command, "-o", str(out)], repo)
    html = (out / "index.html").read_text()
    expected = html.count("vegaEmbed('#")
    assert expected >= 25 and "cdn.jsdelivr" not in html
    drawn, log = open_page(browser, out / "index.html", expected)
    assert len(drawn) == expected and all(a > 0 for a in drawn), f"{sum(a > 0 for a in drawn)}/{expected} drawn"
    errors = [entry["message"] for entry in log if entry["level"] == "SEVERE"]
    assert not errors, errors[:5]
    images = browser.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")
    assert len(images) == 6 * (2 if command[0] == "diff" else 1) and all(w > 0 for w in images)
    if command[0] == "diff":  # every chart overlays both revisions
        assert all(revisions(spec) == {"workspace", "HEAD"} for spec in specs(html))
    screenshot(browser, tmp_path / "page.png")
    colours = Image.open(tmp_path / "page.png").convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50, "the screenshot is (nearly) blank"


def test_cdn_page_stays_blank_so_the_browser_really_is_offline(repo, browser, tmp_path):
    from dvc_render.html import PAGE_HTML
    from dvc_render.vega import VegaRenderer

    out = tmp_path / "dvc_plots"
    run([sys.executable, "-m", "dvc", "plots", "show", "-o", str(out)], repo)
    ours = (out / "index.html").read_text()
    body = ours[ours.index("<body>") + len("<body>") : ours.rindex("</body>")]
    cdn = out / "cdn.html"
    cdn.write_text(
        PAGE_HTML.replace("{refresh_tag}", "").replace("{scripts}", VegaRenderer.SCRIPTS).replace("{plot_divs}", body)
    )
    drawn, log = open_page(browser, cdn, expected=1, timeout=3.0)
    assert drawn == [] or not any(drawn)
    assert any("ERR_INTERNET_DISCONNECTED" in e["message"] or "ERR_NAME_NOT_RESOLVED" in e["message"] for e in log)
