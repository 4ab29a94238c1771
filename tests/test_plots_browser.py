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
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from support.pipeline_repo import built_once

ROOT = Path(__file__).resolve().parents[1]
TASKS = {"electron_photon": (2, 32), "quark_gluon": (3, 125), "jet_mass": (4, 125)}  # channels, size
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


def run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


def fake_results(root: Path, seed: int) -> None:
    """metrics/<task>/{train,eval} as the stages write them, from made-up predictions (no training)."""
    import dataclasses

    from e2e.config import load_params
    from e2e.evaluation.headline import headline
    from e2e.stages import evaluate
    from e2e.store.live import open_live
    from e2e.store.sparse import SparseImages
    from e2e.tasks import get_task

    rng = np.random.default_rng(seed)
    # params.yaml's bins (every *_vs_<variable> plot dvc.yaml declares), few resamples: widths do not matter here
    ep = dataclasses.replace(load_params(ROOT / "params.yaml").evaluate, bootstrap=50)
    for i, (name, (channels, size)) in enumerate(TASKS.items()):
        task, n = get_task(name), 400
        # the same events (truth, observers, images) in every revision, as the real split gives: only the
        # predictions and training curves depend on the seed, so a review can pair the revisions' test events
        events = np.random.default_rng(1000 + i)
        if task.is_classification:
            y = events.integers(0, 2, n).astype(float)
            df = pd.DataFrame({"truth": y, "prediction": 1 / (1 + np.exp(-rng.normal(2 * y - 1, 1.0)))})
        else:
            t = events.uniform(85, 500, n)
            df = pd.DataFrame({"truth": t, "prediction": t * rng.normal(1, 0.1, n), "pt": events.uniform(400, 1000, n)})
        for var, spec in ep.bins[name].items():  # the binning variables, over their bins
            lo, hi = (spec[0], spec[-1]) if isinstance(spec, list) else (0.0, 50.0)
            df[var] = events.uniform(lo, hi, n)
        df.insert(0, "split", np.where(np.arange(n) % 2, "test", "val"))
        df.insert(1, "row", np.arange(n))
        images = SparseImages.from_dense(events.exponential(1.0, (n, channels, size, size)).astype(np.float16))
        data = types.SimpleNamespace(images=images, meta={"channel_names": [f"ch{c}" for c in range(channels)]})
        test = df[df["split"] == "test"].reset_index(drop=True)
        results = evaluate.summarise(task, df, 250.0, ep)
        with open_live(root / "metrics" / name / "eval") as live:
            live.summary.update(results)
            evaluate.log_plots(live, task, test, 200, ep)
            log_images_once(live, root / "metrics" / name / "eval", task, data, test, channels)
        # evaluate's other two files: the predictions (the review pairs the revisions' test events) and the headline
        df.to_parquet(root / "metrics" / name / "eval" / "predictions.parquet", index=False)
        top = headline(task, results, ep.working_points)
        (root / "metrics" / name / "eval" / "headline.json").write_text(json.dumps(top, indent=2) + "\n")
        with open_live(root / "metrics" / name / "train") as live:
            for _ in range(3):
                for key in ("train/loss", "val/loss", f"val/{task.primary_metric}", "lr", "epoch_seconds"):
                    live.log_metric(key, float(rng.uniform(0.2, 1.0)))
                live.next_step()


_IMAGES: dict[str, Path] = {}  # task -> a directory holding the PNGs evaluate drew for it once


def log_images_once(live, out: Path, task, data, test, channels: int) -> None:
    """evaluate's image views, drawn once per task and session (drawing them costs seconds a figure,
    and they are the same kind of picture in every fake revision), then logged from the copy."""
    from e2e.stages import evaluate

    if task.name not in _IMAGES:
        evaluate.log_images(live, task, data, test, list(range(channels)))
        live.sync()
        keep = Path(tempfile.mkdtemp(prefix=f"e2e-images-{task.name}-"))
        for png in (out / "plots" / "images").glob("*.png"):
            shutil.copy(png, keep / png.name)
        _IMAGES[task.name] = keep
        return
    for png in sorted(_IMAGES[task.name].glob("*.png")):
        live.log_image(png.name, png)


def make_results_repo(root: Path) -> Path:
    """A git+DVC repo with this project's dvc.yaml, params.yaml and .dvc plot settings, results
    committed at HEAD (seed 0) and different ones in the workspace (seed 1)."""
    root.mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, root / name)
    for git in (["init", "-q"], ["config", "user.email", "t@example.org"], ["config", "user.name", "test"]):
        run(["git", *git], root)
    run([sys.executable, "-m", "dvc", "init", "-q"], root)
    shutil.copy(ROOT / ".dvc" / "config", root / ".dvc" / "config")
    shutil.copy(ROOT / ".dvc" / "offline_plots.html", root / ".dvc" / "offline_plots.html")
    shutil.copytree(ROOT / ".dvc" / "plots", root / ".dvc" / "plots")
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "setup"], root)  # DVCLive refuses a repository without commits
    fake_results(root, seed=0)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "base results"], root)
    shutil.rmtree(root / "metrics")
    fake_results(root, seed=1)
    return root


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


_TEMPLATE: list[Path] = []


def results_repo(tmp_path_factory, name: str) -> Path:
    """A private copy of one make_results_repo per test session (the review tests use it too), built once
    also across pytest-xdist workers (pipeline_repo.built_once)."""
    if not _TEMPLATE:
        _TEMPLATE.append(built_once(tmp_path_factory, "results-template", make_results_repo))
    dest = tmp_path_factory.mktemp(name) / "repo"
    shutil.copytree(_TEMPLATE[0], dest, symlinks=True)
    return dest


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
