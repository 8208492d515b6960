"""The dashboard in a real headless Chromium (Selenium, the Debian chromium and
chromium-driver), against the API served by uvicorn on a free port."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from api.app import create_app
from api.tokens import Role, create_token
from ombre.config import load_config
from shadow.calendar import to_ns
from shadow.schema import open_engine
from tests.api.conftest import chromium, serving
from tests.shadow.scenarios import (
    D_DAY,
    WORKED_ORDERS_CSV,
    at,
    reading,
    scenario_d_lines,
    worked_example_lines,
)
from tests.shadow.test_drift_alerts import RAMP_WATCH
from tests.shadow.test_replay import WORKED_STOP, Shop, replay_worked_example

NOW = at("13:59")  # late in the worked example's shift


class Served:
    def __init__(self, shop: Shop, url: str, token: str) -> None:
        self.shop, self.url, self.token = shop, url, token


@pytest.fixture
def served(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Served]:
    shop = Shop(tmp_path, None, [WORKED_STOP], drift=[RAMP_WATCH])
    replay_worked_example(shop, capsys)
    assert shop.ombre(capsys, "replay", str(shop.write("d.jsonl", scenario_d_lines())))[0] == 0
    config = load_config(shop.config, {})
    engine = open_engine(shop.engine_url())
    try:
        token = create_token(engine, "screen", Role.VIEWER)
    finally:
        engine.dispose()
    with serving(create_app(config, clock=lambda: to_ns(NOW))) as url:
        yield Served(shop, url, token)


def shift_oee(served: Served, capsys: pytest.CaptureFixture[str]) -> float:
    """press-1's OEE over the shift so far (06:00 to now), as `ombre kpi` gives it: what
    its tile must show."""
    code, out, _ = served.shop.ombre(capsys, "kpi", "--machine", "press-1", "--from",
                                     "2026-03-02T06:00:00Z", "--to", "2026-03-02T13:59:00Z",
                                     "--json")
    assert code == 0
    value: float = json.loads(out)[0]["kpis"]["oee"]["value"]
    return value


def test_the_overview_shows_the_machines_and_alerts_live(
        served: Served, browser: webdriver.Chrome, capsys: pytest.CaptureFixture[str]) -> None:
    browser.get(f"{served.url}/#token={served.token}")
    wait = WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException])
    # The tile shows an OEE once the stream's first KPI refresh arrived. Tiles are
    # redrawn on every update, so each look finds the element afresh.
    value = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#machine-press-1 .oee")
                       .get_attribute("data-value"))
    expected = shift_oee(served, capsys)
    assert float(value or "nan") == pytest.approx(expected, abs=1e-12)
    text = wait.until(lambda d: d.find_element(By.ID, "machine-press-1").text)
    assert f"{100 * expected:.1f} %" in text
    assert "IDLE" in text
    assert wait.until(lambda d: d.find_element(By.ID, "machine-press-1")
                      .get_attribute("data-category")) == "ADOT"
    assert browser.find_elements(By.CSS_SELECTOR, "#alerts li[id^=alert-]") == []
    # A new drift episode is replayed while the page is open: its alert appears, live.
    day = D_DAY + timedelta(days=1)
    lines = [reading(at("06:00", day) + timedelta(seconds=10 * i), "temp",
                     60.0 + (3.0 if i >= 60 else 0.0)) for i in range(120)]
    assert served.shop.ombre(capsys, "replay", str(served.shop.write("step.jsonl", lines)))[0] \
        == 0
    alert = wait.until(lambda d: [e.text for e in
                                  d.find_elements(By.CSS_SELECTOR, "#alerts li[id^=alert-]")])
    assert "press-1 / temp" in alert[0]
    assert browser.current_url == f"{served.url}/"  # no reload, and the token left the URL


def token_for(served: Served, role: Role) -> str:
    engine = open_engine(served.shop.engine_url())
    try:
        return create_token(engine, role.name.lower(), role)
    finally:
        engine.dispose()


def test_an_operator_assigns_a_reason_on_the_machine_page(
        served: Served, browser: webdriver.Chrome, capsys: pytest.CaptureFixture[str]) -> None:
    wait = WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException])
    # A viewer sees the page but may not assign.
    browser.get(f"{served.url}/machine?id=press-1#token={served.token}")
    row = wait.until(lambda d: [r for r in d.find_elements(By.CSS_SELECTOR, "#downtime tr")
                                if "IDLE" in r.text and "ADOT" in r.text])[0]
    row.find_element(By.TAG_NAME, "button").click()
    wait.until(lambda d: "operator" in d.find_element(By.ID, "downtime-error").text)
    # The band shows the shift, its IDLE start as ADOT; the losses are in minutes.
    interval_id = row.get_attribute("id").removeprefix("downtime-")  # type: ignore[union-attr]
    segment = browser.find_element(By.CSS_SELECTOR, f'#band [data-id="{interval_id}"]')
    assert segment.get_attribute("data-category") == "ADOT"
    # Every number signal has a chart (uPlot draws on a canvas).
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-temp canvas"))
    losses = browser.find_element(By.ID, "losses").text
    assert "availability loss: 60.0" in losses  # PBT 450 - APT 390 (to 13:59: 449 - 389)
    # An operator assigns "tool" (a failure, ADET): the API and the band follow.
    browser.execute_script("localStorage.clear()")
    browser.get("about:blank")  # else only the address's #fragment changes: no new page
    browser.get(f"{served.url}/machine?id=press-1#token={token_for(served, Role.OPERATOR)}")
    row = wait.until(lambda d: d.find_elements(By.ID, f"downtime-{interval_id}"))[0]
    Select(row.find_element(By.TAG_NAME, "select")).select_by_value("tool")
    row.find_element(By.TAG_NAME, "button").click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'#band [data-id="{interval_id}"]')
               .get_attribute("data-category") == "ADET")
    code, out, _ = served.shop.ombre(capsys, "downtime", "list")
    assert code == 0
    assert f"\n{interval_id}\t" not in out  # explained now
    code, out, _ = served.shop.ombre(capsys, "kpi", "--machine", "press-1", "--from",
                                     "2026-03-02T06:00:00Z", "--to", "2026-03-02T14:00:00Z",
                                     "--json")
    assert json.loads(out)[0]["quantities"]["FE"] == 3


def test_an_operator_acknowledges_then_closes_an_alert_in_the_browser(
        served: Served, browser: webdriver.Chrome, capsys: pytest.CaptureFixture[str]) -> None:
    day = D_DAY + timedelta(days=1)  # a step that is still out of control at the file's end
    lines = [reading(at("06:00", day) + timedelta(seconds=10 * i), "temp",
                     60.0 + (3.0 if i >= 60 else 0.0)) for i in range(120)]
    assert served.shop.ombre(capsys, "replay", str(served.shop.write("s.jsonl", lines)))[0] == 0
    code, out, _ = served.shop.ombre(capsys, "alerts", "list", "--status", "open")
    assert code == 0
    [alert_id] = [line.split("\t")[0] for line in out.splitlines()[1:]]
    wait = WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException])
    browser.get(f"{served.url}/alerts#token={token_for(served, Role.OPERATOR)}")
    row = f"alert-row-{alert_id}"
    wait.until(lambda d: d.find_element(By.ID, row).get_attribute("data-status") == "open")
    browser.find_element(By.CSS_SELECTOR, f"#{row} button.ack").click()
    wait.until(lambda d: d.find_element(By.ID, row).get_attribute("data-status")
               == "acknowledged")
    Select(browser.find_element(By.CSS_SELECTOR, f"#{row} select")).select_by_value("sensor")
    browser.find_element(By.CSS_SELECTOR, f"#{row} input").send_keys("thermocouple loose")
    browser.find_element(By.CSS_SELECTOR, f"#{row} button.close").click()
    wait.until(lambda d: d.find_element(By.ID, row).get_attribute("data-status") == "closed")
    code, out, _ = served.shop.ombre(capsys, "alerts", "list")
    closed = next(line.split("\t") for line in out.splitlines() if line.startswith(alert_id))
    assert closed[4] == "closed"
    assert closed[-3:] == ["operator", "sensor", "thermocouple loose"]


# Every element laid out beyond the viewport's right edge, or the page wider than it:
# what a tablet would have to scroll sideways to see.
OVERFLOW = """
const width = document.documentElement.clientWidth;
const out = [...document.querySelectorAll("#page *, header *")]
  .filter((e) => e.getClientRects().length && !e.closest(".scroll"))
  .filter((e) => e.getBoundingClientRect().right > width + 0.5)
  .map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`);
return [document.documentElement.scrollWidth, width, out];
"""


@pytest.mark.parametrize("size", [(800, 1280), (1280, 800)], ids=["portrait", "landscape"])
def test_the_overview_and_machine_page_fit_a_tablet(served: Served,
                                                    size: tuple[int, int]) -> None:
    driver = chromium(*size, tablet=True)
    try:
        wait = WebDriverWait(driver, 20, ignored_exceptions=[StaleElementReferenceException])
        driver.get(f"{served.url}/#token={served.token}")
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#machine-press-1 .oee")
                   .get_attribute("data-value"))
        assert driver.execute_script("return navigator.maxTouchPoints") > 0  # emulated
        assert driver.execute_script("return window.innerWidth") == size[0]
        scroll_width, width, out = driver.execute_script(OVERFLOW)
        assert (scroll_width, out) == (width, [])
        # Readable from a step back: the OEE in large type, the tile's text not cut.
        tile = driver.find_element(By.ID, "machine-press-1")
        oee = tile.find_element(By.CLASS_NAME, "oee")
        assert float(oee.value_of_css_property("font-size").removesuffix("px")) >= 32
        assert tile.size["width"] >= 300
        assert driver.execute_script("const e = arguments[0]; return e.scrollWidth <= "
                                     "e.clientWidth", tile)
        driver.get(f"{served.url}/machine?id=press-1")  # the token stayed in the browser
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-temp canvas"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#downtime tr"))
        scroll_width, width, out = driver.execute_script(OVERFLOW)
        assert (scroll_width, out) == (width, [])
    finally:
        driver.quit()


def test_the_machine_page_warns_of_autocorrelated_readings(
        tmp_path: Path, browser: webdriver.Chrome, capsys: pytest.CaptureFixture[str]) -> None:
    """A CUSUM learning its baseline from AR(1) temperatures (phi 0.6): the page says,
    above the chart, that the readings are autocorrelated and the detector watches the
    AR(1) residuals."""
    shop = Shop(tmp_path, None, [WORKED_STOP], drift=[{"signal": "temp", "detector": "cusum"}])
    rng = np.random.default_rng(9)
    temp = np.empty(500)
    temp[0] = 0.0
    for i in range(1, temp.size):
        temp[i] = 0.6 * temp[i - 1] + 0.4 * rng.standard_normal()
    # the day before the worked example, whose temperatures the detector then watches
    lines = [reading(at("06:00") - timedelta(days=1, seconds=-10 * i), "temp", 60.0 + v)
             for i, v in enumerate(temp.round(3).tolist())]
    assert shop.ombre(capsys, "replay", str(shop.write("ar1.jsonl", lines)))[0] == 0
    replay_worked_example(shop, capsys)
    engine = open_engine(shop.engine_url())
    try:
        token = create_token(engine, "screen", Role.VIEWER)
    finally:
        engine.dispose()
    with serving(create_app(load_config(shop.config, {}), clock=lambda: to_ns(NOW))) as url:
        browser.get(f"{url}/machine?id=press-1#token={token}")
        wait = WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException])
        note = wait.until(lambda d: d.find_elements(By.ID, "drift-note-temp"))[0].text
        phi = float(note.split("φ = ")[1].split(" ")[0])
        assert note.startswith("⚠ temp · cusum: readings autocorrelated (φ = ")
        assert abs(phi - 0.6) < 3 * 0.036  # 3 standard errors of phi over 500 readings
        assert note.endswith("n = 500): the detector watches the AR(1) residuals (a slow "
                             "drift shows later)")
        # The note stands above the temperature chart.
        chart = browser.find_element(By.ID, "chart-temp")
        assert browser.execute_script("return arguments[0].nextElementSibling.id",
                                      browser.find_element(By.ID, "drift-note-temp")) \
            == chart.get_attribute("id")


def test_the_tile_and_the_machine_page_show_coverage_not_a_false_loss(
        tmp_path: Path, browser: webdriver.Chrome, capsys: pytest.CaptureFixture[str]) -> None:
    """The shift began at 06:00, the data at 06:50 (as in the demo's first screen): the
    50 minutes without data are shown as such beside the KPIs, and not as lost
    availability."""
    shop = Shop(tmp_path, None, [WORKED_STOP])
    first = at("06:50")  # the gateway's first reading: the press running order 4711
    lines = [reading(first, "order", "4711"), reading(first, "state", "RUNNING"),
             *(line for line in worked_example_lines()
               if json.loads(line)["ts"] > "2026-03-02T06:50:00Z")]
    orders = shop.write("orders.csv", WORKED_ORDERS_CSV)
    assert shop.ombre(capsys, "orders import", str(orders))[0] == 0
    assert shop.ombre(capsys, "replay", str(shop.write("late.jsonl", lines)))[0] == 0
    code, out, _ = shop.ombre(capsys, "kpi", "--machine", "press-1", "--from",
                              "2026-03-02T06:00:00Z", "--to", "2026-03-02T13:59:00Z", "--json")
    assert code == 0
    [expected] = json.loads(out)
    assert expected["coverage"]["no_data_s"] == 50 * 60
    engine = open_engine(shop.engine_url())
    try:
        token = create_token(engine, "screen", Role.VIEWER)
    finally:
        engine.dispose()
    with serving(create_app(load_config(shop.config, {}), clock=lambda: to_ns(NOW))) as url:
        browser.get(f"{url}/#token={token}")
        wait = WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException])
        value = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#machine-press-1 .coverage")
                           .get_attribute("data-value"))
        assert float(value or "nan") == pytest.approx(expected["coverage"]["value"], abs=1e-12)
        text = browser.find_element(By.CSS_SELECTOR, "#machine-press-1 .coverage").text
        assert text == (f"data {100 * expected['coverage']['value']:.1f} % · no data 50 min · "
                        "unknown 0.0 %")
        oee = float(browser.find_element(By.CSS_SELECTOR, "#machine-press-1 .oee")
                    .get_attribute("data-value") or "nan")
        assert oee == pytest.approx(expected["kpis"]["oee"]["value"], abs=1e-12)
        assert expected["kpis"]["availability"]["value"] == pytest.approx(
            expected["time_s"]["APT"] / (expected["time_s"]["POT"] - 50 * 60
                                         - expected["time_s"]["PDOT"]), abs=1e-12)
        browser.save_screenshot(str(tmp_path / "overview.png"))
        browser.get(f"{url}/machine?id=press-1")
        line = wait.until(lambda d: d.find_element(By.ID, "coverage").text)
        assert "no data (not counted as a loss): 50 min" in line
        browser.save_screenshot(str(tmp_path / "machine.png"))
