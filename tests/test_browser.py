"""Headless Chromium opens a generated report: no JavaScript error, every figure drawn with the expected
number of points, and a screenshot that is not blank.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` test extra (``scripts/setup.sh``
installs them). Skipped where they are missing, except under CI (``CI`` set), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from report_study import create_study

from nasprune.cli import main
from nasprune.report import build_tables
from nasprune.report.figures import PARALLEL_PARAMS, TOP_PARAMS

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--window-size=1300,1000")
# Collects uncaught errors from the first script on, before the page's own code runs.
ERROR_HOOK = ("window.__errors = []; window.addEventListener('error', e => window.__errors.push("
              "String(e.message || e.type))); window.addEventListener('unhandledrejection', e => "
              "window.__errors.push('unhandled rejection: ' + String(e.reason)));")
# Points per trace as plotly holds them (gd.data; null = a legend-only placeholder), and the marker paths drawn.
READ_FIGURES = """
return Array.from(document.querySelectorAll('div[id^="fig-"]')).map(gd => ({
  id: gd.id,
  rendered: gd.classList.contains('js-plotly-plot') && !!gd._fullLayout,
  points: (gd.data || []).map(t => ((t.orientation === 'h' ? t.y : t.x) || []).filter(v => v !== null).length),
  drawn_markers: gd.querySelectorAll('.scatterlayer .trace .points path.point').length,
}));
"""


def _browser(user_data_dir: Path):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _skip_or_fail("selenium is not installed (pip install -e '.[test]')")
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        _skip_or_fail("Debian's chromium and chromium-driver are not installed (scripts/setup.sh)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": ERROR_HOOK})
    return driver


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run in CI: {reason}")
    pytest.skip(reason)


def _expected_points(tables, study) -> dict[str, int]:
    trials = tables.trials
    trained = trials[trials["trained"]]
    params = {name for t in study.get_trials() if t.number in set(trained["number"]) for name in t.params}
    return {
        "fig-pareto_front": len(trials) + len(tables.pareto),  # every trial once, plus the front's line
        "fig-accuracy_cost": int(trained["latency_ms"].notna().sum() + trained["params"].notna().sum()),
        "fig-hypervolume": len(tables.hypervolume),
        "fig-channels": 2 * len(tables.layers),  # before and after pruning
        "fig-resolution": len(tables.features) + int(tables.features["se"].sum()),
        "fig-importance": int(tables.importance.groupby("target").size().clip(upper=TOP_PARAMS).sum()),
        # one line per trained feasible trial through one axis per objective and per (important) parameter
        "fig-parallel": len(trained) * (len(tables.objectives) + min(len(params), PARALLEL_PARAMS)),
    }


def _wait_rendered(driver, count: int, timeout_s: float = 20.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        figures = driver.execute_script(READ_FIGURES)
        if len(figures) == count and all(f["rendered"] for f in figures) or time.monotonic() > deadline:
            return figures
        time.sleep(0.2)


def test_report_renders_in_headless_chromium(tmp_path):
    from PIL import Image, ImageStat

    url = f"sqlite:///{tmp_path / 'demo.db'}"
    study = create_study(url)
    page = tmp_path / "demo.html"
    assert main(["report", "--study", "demo", "--storage", url, "--out", str(page)]) == 0
    expected = _expected_points(build_tables(study), study)

    driver = _browser(tmp_path / "chromium-profile")
    try:
        driver.get(page.as_uri())
        figures = _wait_rendered(driver, len(expected))
        errors = driver.execute_script("return window.__errors")
        severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1300, min(height + 50, 12000))
        time.sleep(0.5)
        screenshot = tmp_path / "report.png"
        driver.save_screenshot(str(screenshot))
        # The same detectors on a page with a broken script: they must see its error.
        broken = tmp_path / "broken.html"
        broken.write_text("<html><body><script>Plotly.newPlot('nowhere', []);</script></body></html>")
        driver.get(broken.as_uri())
        broken_errors = driver.execute_script("return window.__errors")
        broken_severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()

    assert errors == [] and severe == []
    assert "Plotly is not defined" in broken_errors[0] and "Plotly is not defined" in broken_severe[0]
    assert {f["id"] for f in figures} == set(expected)
    for figure in figures:
        assert figure["rendered"], figure["id"]
        assert sum(figure["points"]) == expected[figure["id"]], figure
    front = next(f for f in figures if f["id"] == "fig-pareto_front")
    assert front["drawn_markers"] == expected["fig-pareto_front"] - 4  # the front's line has no markers
    image = Image.open(screenshot).convert("L")
    assert image.size[1] > 3000  # the whole page, not one viewport
    assert ImageStat.Stat(image).stddev[0] > 20  # not blank: plots, text and panels on the background
    assert sum(image.histogram()[:128]) / (image.size[0] * image.size[1]) > 0.01  # some dark ink
    if os.environ.get("NASPRUNE_SCREENSHOT_DIR"):
        shutil.copy(screenshot, Path(os.environ["NASPRUNE_SCREENSHOT_DIR"]) / "report.png")
