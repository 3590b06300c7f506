"""The Flash sale tab and page in Locust's web UI, driven in headless Chromium.

Starts Locust (stand-alone, web UI) with a scenario against the bundled storefront, starts a run
from the UI, watches the Flash sale figures update, stops the run from the UI and checks that
the report of the stopped run accounts for every order. Skips where Chromium, chromedriver or
selenium is missing, unless FLASHSALE_REQUIRE_SERVICES=1 (CI), where that fails instead.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from simulator.locust import LOCUSTFILE
from tests.procs import free_port, stop

SCENARIO = """
name = "ui-sale"
description = "a slow sale to watch in the browser"
seed = 5
duration_s = 40.0
[[products]]
id = "durian"
stock = 300
weight = 3.0
[[products]]
id = "manggis"
stock = 2000
weight = 1.0
[demand]
baseline_per_s = 40.0
[demand.spike]
at_s = 2.0
peak_per_s = 80.0
half_life_s = 5.0
"""

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float = 15.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what``.

    A page element that the UI re-rendered between finding and reading it (selenium's
    StaleElementReferenceException) counts as "not yet": the next poll finds the new one.
    """
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = probe()
        except StaleElementReferenceException:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def locust_ui(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Bundled storefront + Locust web UI on free loopback ports: (UI URL, report path)."""
    scenario = tmp_path / "ui.toml"
    scenario.write_text(SCENARIO)
    cmd = [sys.executable, "-m", "simulator", "serve", "--scenario", str(scenario)]
    store = subprocess.Popen(
        [*cmd, "--port", "0"], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    procs = [store]
    try:
        assert store.stdout is not None
        host = store.stdout.readline().split("listening on ", 1)[1].split()[0]
        port = free_port()
        report = tmp_path / "out" / "report.json"
        args = ["--flashsale-scenario", str(scenario), "--host", host]
        args += ["--web-host", "127.0.0.1", "--web-port", str(port)]
        args += ["--flashsale-out", str(report.parent), "--flashsale-lead", "0.5"]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args],
                stdout=(tmp_path / "locust.log").open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        ui = f"http://127.0.0.1:{port}"
        wait_for("the Locust web UI", lambda: _get(ui + "/flashsale/data"))
        yield ui, report
    finally:
        for p in reversed(procs):
            stop(p)


def _get(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            data: dict[str, Any] = json.loads(r.read())
            return data
    except OSError:
        return None


def _clicked(element: Any) -> bool:
    """Click ``element`` if there is one; True once clicked (in wait_for a stale one retries)."""
    if element is None:
        return False
    element.click()
    return True


def _button(driver: Any, text: str) -> Any:
    from selenium.webdriver.common.by import By

    found = [b for b in driver.find_elements(By.TAG_NAME, "button") if b.text.upper() == text]
    return found[0] if found else None


@pytest.mark.slow
def test_flash_sale_tab_updates_live_and_the_run_stops_from_the_ui(
    locust_ui: tuple[str, Path], browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    ui, report_path = locust_ui
    browser.get(ui + "/")
    wait_for("the START button", lambda: _clicked(_button(browser, "START")))
    wait_for("the run to start", lambda: _button(browser, "STOP"))

    # the tab in Locust's own UI: one row per SKU from the storefront's /inventory
    wait_for(
        "the Flash sale tab",
        lambda: _clicked(
            next(
                (
                    t
                    for t in browser.find_elements(By.CSS_SELECTOR, "[role=tab]")
                    if t.text.upper() == "FLASH SALE"
                ),
                None,
            )
        ),
    )
    wait_for(
        "the tab's stock rows",
        lambda: "manggis" in browser.page_source and "durian" in browser.page_source,
    )

    # the Flash sale page: its figures move while the run goes on
    browser.get(ui + "/flashsale")

    def sent() -> int:
        text = browser.find_element(By.ID, "sent").text.replace(",", "")
        return int(text) if text.isdigit() else 0

    first = wait_for("orders sent to show", lambda: sent() or None)
    wait_for("orders sent to grow", lambda: sent() > first)
    rows = browser.find_elements(By.CSS_SELECTOR, "#stock tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows] == ["durian", "manggis"]
    wait_for("the achieved-rate line", lambda: browser.find_elements(By.ID, "achieved-line"))
    assert browser.find_elements(By.ID, "demand-line")
    wait_for("the audit verdict", lambda: browser.find_element(By.ID, "audit-verdict").text == "ok")
    browser.save_screenshot(str(tmp_path / "flashsale-page.png"))

    # stop from Locust's UI; the stopped run's report accounts for every scheduled order
    browser.get(ui + "/")
    wait_for("the STOP button", lambda: _clicked(_button(browser, "STOP")))
    view = wait_for("the report", lambda: (_get(ui + "/flashsale/data") or {}).get("report"))
    orders = view["orders"]
    assert 0 < orders["sent"] < orders["scheduled"]  # stopped early
    assert sum(orders["outcomes"].values()) == orders["scheduled"]
    checks = view["locust"]["checks"]
    assert checks["unintended_repeats"] == 0 and checks["rows_sent_twice"] == 0
    assert (
        view["partial"]
        and view["audit"]["ok"]
        and view["audit"]["lost_confirmations"]["count"] == 0
    )
    assert json.loads(report_path.read_text())["orders"] == orders
    browser.get(ui + "/flashsale")
    wait_for(
        "the page's report line", lambda: "Last run:" in browser.find_element(By.ID, "report").text
    )
    browser.save_screenshot(str(tmp_path / "flashsale-page-stopped.png"))
    assert (tmp_path / "flashsale-page.png").stat().st_size > 10_000
