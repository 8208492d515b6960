"""The state bands in a real headless Chromium: the machine page's band and the line
Gantt, at their data's times, the open interval growing live, with legend and axis;
the signal charts' legend, cursor and exports. One app and one browser for the module:
the tests read, and only the last one adds data."""

from __future__ import annotations

import csv
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from api.app import create_app
from api.tokens import Role, create_token
from ombre.cli import main
from ombre.config import load_config
from shadow.calendar import to_ns
from shadow.schema import open_engine
from tests.api.conftest import chromium, serving
from tests.shadow.scenarios import WORKED_ORDERS_CSV, at, reading, worked_example_lines
from tests.shadow.test_drift_alerts import RAMP_WATCH
from tests.shadow.test_replay import WORKED_STOP, Shop
from tests.sim.test_demo import _get

SHIFT = (to_ns(at("06:00")), to_ns(at("14:00")))
FIRST, CUT = at("06:10"), at("12:00")  # the gateway's first and last reading
SIGMA, MINUS = "\u03c3", "\u2212"  # the charts' legend writes -3 sigma as a mathematician


@dataclass
class Plant:
    shop: Shop
    url: str
    token: str
    browser: webdriver.Chrome
    downloads: Path
    now: list[int]  # the app's clock, moved by the last test

    def replay(self, name: str, lines: Iterator[str] | list[str]) -> None:
        assert main(["replay", "-c", str(self.shop.config),
                     str(self.shop.write(name, lines))]) == 0

    def api(self, path: str) -> Any:
        return _get(f"{self.url}/api/v1{path}", self.token)

    def wait(self) -> WebDriverWait[webdriver.Chrome]:
        return WebDriverWait(self.browser, 20,
                             ignored_exceptions=[StaleElementReferenceException])


def press(until: datetime) -> Iterator[str]:
    """press-1's worked example as a gateway started at 06:10 sees it, up to `until`."""
    yield reading(FIRST, "state", "IDLE")
    yield from (line for line in worked_example_lines()
                if stamp(FIRST) < json.loads(line)["ts"] <= stamp(until))


def stamp(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plant]:
    """press-1 from 06:10 to 12:00 and press-2 (on the same line) running from 07:00,
    broken down 09:00-09:40; the app's clock at 12:00."""
    shop = Shop(tmp_path_factory.mktemp("plant"), None, [WORKED_STOP], drift=[RAMP_WATCH])
    config = json.loads(shop.config.read_text())
    [line] = config["sites"][0]["lines"]
    line["name"] = "Moulding"
    line["machines"].append({**line["machines"][0], "id": "press-2", "name": "Press 2"})
    shop.config.write_text(json.dumps(config))
    assert main(["orders", "import", "-c", str(shop.config),
                 str(shop.write("orders.csv", WORKED_ORDERS_CSV))]) == 0
    other = [reading(at("07:00"), "state", "RUNNING", "press-2"),
             reading(at("09:00"), "state", "BREAKDOWN", "press-2"),
             reading(at("09:40"), "state", "RUNNING", "press-2"),
             *(reading(at("07:00") + timedelta(minutes=i), "temp", 50.0, "press-2")
               for i in range(301))]
    lines = sorted([*press(CUT), *other], key=lambda line: json.loads(line)["ts"])
    downloads = tmp_path_factory.mktemp("downloads")
    now = [to_ns(CUT)]
    engine = open_engine(shop.engine_url())
    try:
        token = create_token(engine, "screen", Role.VIEWER)
    finally:
        engine.dispose()
    browser = chromium(1600, 1000)
    browser.execute_cdp_cmd("Page.setDownloadBehavior",
                            {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        with serving(create_app(load_config(shop.config, {}), clock=lambda: now[0])) as url:
            result = Plant(shop, url, token, browser, downloads, now)
            result.replay("day.jsonl", lines)
            yield result
    finally:
        browser.quit()


def fraction(ts: datetime) -> float:
    return (to_ns(ts) - SHIFT[0]) / (SHIFT[1] - SHIFT[0])


def box(browser: webdriver.Chrome, element: WebElement) -> dict[str, float]:
    found: dict[str, float] = browser.execute_script(
        "const r = arguments[0].getBoundingClientRect(); "
        "return {left: r.left, right: r.right, width: r.width};", element)
    return found


def open_machine_page(plant: Plant) -> None:
    plant.browser.get("about:blank")
    plant.browser.get(f"{plant.url}/machine?id=press-1#token={plant.token}")
    plant.wait().until(lambda d: d.find_elements(By.CSS_SELECTOR, "#band .seg[data-open]"))
    plant.wait().until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-temp canvas"))


def test_the_api_band_is_the_kpis_time(plant: Plant) -> None:
    """The band covers the shift to now: no data before the gateway's first reading,
    the states at their times, the open interval to 12:00; its APT is the KPIs' APT."""
    got = plant.api("/timeline?machine=press-1")
    assert (got["from_ns"], got["to_ns"], got["now_ns"]) == (*SHIFT, to_ns(CUT))
    [m] = got["machines"]
    assert (m["line"], m["line_name"]) == ("line-1", "Moulding")
    seen = [(s["start_ns"], s["end_ns"], s["kind"], s["category"], s["state"], s["open"])
            for s in m["segments"]]
    times = [at(h) for h in ("06:00", "06:10", "06:15", "06:35", "08:35", "08:50", "11:20",
                             "11:30", "12:00")]
    kinds = [("no_data", None, None), ("state", "ADOT", "IDLE"), ("state", "ASUT", "SETUP"),
             ("state", "APT", "RUNNING"), ("state", "ADET", "BREAKDOWN"),
             ("state", "APT", "RUNNING"), ("state", "ADET", "BREAKDOWN"),
             ("state", "APT", "RUNNING")]
    assert seen == [(to_ns(a), to_ns(b), *k, b == CUT)
                    for a, b, k in zip(times[:-1], times[1:], kinds, strict=True)]
    assert m["segments"][-1]["id"] is None
    assert m["planned_stops"] == [{"start_ns": to_ns(at("13:30")), "end_ns": to_ns(at("14:00")),
                                   "name": "maintenance"}]
    [kpis] = plant.api(f"/kpis?machine=press-1&from={stamp(at('06:00'))}&to={stamp(CUT)}")
    apt = sum(s["end_ns"] - s["start_ns"] for s in m["segments"] if s["category"] == "APT")
    assert apt == kpis["time_s"]["APT"] * 10**9
    assert kpis["coverage"]["no_data_s"] == 10 * 60


@pytest.mark.parametrize(("query", "status", "detail"), [
    ("machine=press-1&line=line-1", 400, "give one of `machine`, `line` or `site`, not two"),
    ("machine=press-9", 404, "no machine 'press-9' in the config"),
    ("line=line-9", 404, "no line 'line-9' in the config"),
    ("from=2026-03-02T14:00:00Z&to=2026-03-02T06:00:00Z", 400, "`from` (2026-03-02T14:00:00"),
    ("from=yesterday", 422, "from"),
])
def test_a_bad_timeline_query_says_what_is_wrong(plant: Plant, query: str, status: int,
                                                 detail: str) -> None:
    with pytest.raises(AssertionError) as error:
        plant.api(f"/timeline?{query}")
    assert f": {status} " in str(error.value)
    assert detail in str(error.value)


def test_the_line_band_of_a_whole_day(plant: Plant) -> None:
    """An explicit range, a day: each machine's every instant up to now is in one
    segment; the night before the early shift is off (no shift from 22:00 to 06:00)."""
    got = plant.api(f"/timeline?line=line-1&from={stamp(at('00:00'))}&to={stamp(at('23:59'))}")
    assert [m["id"] for m in got["machines"]] == ["press-1", "press-2"]
    assert [s["name"] for s in got["shifts"]] == ["early", "late"]
    for m in got["machines"]:
        segments = m["segments"]
        assert segments[0]["start_ns"] == to_ns(at("00:00"))
        assert segments[-1]["end_ns"] == to_ns(CUT)  # nothing after now
        assert all(a["end_ns"] == b["start_ns"] for a, b in itertools.pairwise(segments))
        assert (segments[0]["kind"], segments[0]["end_ns"]) == ("off", to_ns(at("06:00")))


def test_the_machine_page_band_sits_at_the_data_times(plant: Plant) -> None:
    open_machine_page(plant)
    browser = plant.browser
    band = box(browser, browser.find_element(By.ID, "band"))
    segments = browser.find_elements(By.CSS_SELECTOR, "#band .seg")
    api = plant.api("/timeline?machine=press-1")["machines"][0]["segments"]
    assert len(segments) == len(api)
    for element, s in zip(segments, api, strict=True):
        got = box(browser, element)
        assert got["left"] - band["left"] == pytest.approx(
            band["width"] * (s["start_ns"] - SHIFT[0]) / (SHIFT[1] - SHIFT[0]), abs=0.6)
        assert got["width"] == pytest.approx(
            band["width"] * (s["end_ns"] - s["start_ns"]) / (SHIFT[1] - SHIFT[0]), abs=0.6)
    setup = browser.find_element(By.CSS_SELECTOR, '#band .seg[data-state="SETUP"]')
    assert box(browser, setup)["left"] == pytest.approx(
        band["left"] + band["width"] * fraction(at("06:15")), abs=0.6)
    assert setup.get_attribute("data-category") == "ASUT"
    first = segments[0]
    assert (first.get_attribute("data-kind"), box(browser, first)["left"]) == \
        ("no_data", pytest.approx(band["left"], abs=0.6))
    # The open interval reaches now (12:00), three quarters of the shift; the planned
    # stop still to come is drawn where it will be.
    growing = browser.find_element(By.CSS_SELECTOR, "#band .seg[data-open]")
    assert (growing.get_attribute("data-category"), growing.get_attribute("data-id")) == \
        ("APT", None)
    assert box(browser, growing)["right"] == pytest.approx(
        band["left"] + 0.75 * band["width"], abs=0.6)
    assert "still going on" in (growing.get_attribute("title") or "")
    later = box(browser, browser.find_element(By.CSS_SELECTOR, '#band [data-kind="planned-later"]'))
    assert (later["left"], later["right"]) == (
        pytest.approx(band["left"] + band["width"] * fraction(at("13:30")), abs=0.6),
        pytest.approx(band["right"], abs=0.6))
    # The axis: a label at each half hour, on the plant's clock, where its time is.
    ticks = browser.find_elements(By.CSS_SELECTOR, "#band-axis .tick")
    assert [tick.text for tick in ticks] == [
        f"{h:02d}:{m:02d}" for h in range(6, 15) for m in (0, 30)][:-1]
    for tick in ticks:
        t = box(browser, tick)
        hours, minutes = tick.text.split(":")
        assert (t["left"] + t["right"]) / 2 == pytest.approx(
            band["left"] + band["width"] * fraction(at(f"{hours}:{minutes}")), abs=0.6)
    # The legend: the ISO categories with press-1's own state names, and the time
    # with no state.
    legend = {e.get_attribute("data-legend"): e.text
              for e in browser.find_elements(By.CSS_SELECTOR, "#band-legend li")}
    assert list(legend) == ["APT", "ASUT", "ADET", "ADOT", "PDOT", "planned_stop", "unknown",
                            "no_data"]
    assert legend["APT"] == "production (APT) — RUNNING"
    assert legend["ASUT"] == "setup (ASUT) — SETUP"
    assert legend["ADET"] == "unplanned stop (ADET) — BREAKDOWN"
    assert legend["ADOT"] == "idle, no job (ADOT) — IDLE"
    assert legend["no_data"].startswith("no data — the gateway was not running")
    assert browser.find_element(By.ID, "line-link").get_attribute("href") == \
        f"{plant.url}/line?id=line-1"


def test_the_line_gantt_shows_each_machine_on_one_axis(plant: Plant) -> None:
    browser = plant.browser
    browser.get(f"{plant.url}/line?id=line-1")
    wait = plant.wait()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#lines .band")) == 2)
    assert browser.find_element(By.CSS_SELECTOR, "#line-line-1 h2").text == "Moulding"
    rows = browser.find_elements(By.CSS_SELECTOR, "#line-line-1 .row[id]")
    assert [r.get_attribute("id") for r in rows] == ["row-press-1", "row-press-2"]
    assert rows[1].find_element(By.CLASS_NAME, "name").text == "Press 2"
    bands = [box(browser, r.find_element(By.CLASS_NAME, "band")) for r in rows]
    assert bands[0] == bands[1]  # one time axis: the same left and width
    breakdown = rows[1].find_element(By.CSS_SELECTOR, '.seg[data-category="ADET"]')
    got = box(browser, breakdown)
    assert (got["left"], got["right"]) == (
        pytest.approx(bands[1]["left"] + bands[1]["width"] * fraction(at("09:00")), abs=0.6),
        pytest.approx(bands[1]["left"] + bands[1]["width"] * fraction(at("09:40")), abs=0.6))
    assert rows[1].find_element(By.CSS_SELECTOR, ".seg").get_attribute("data-kind") == "no_data"
    assert browser.find_elements(By.CSS_SELECTOR, "#line-line-1 .axis .tick")[0].text == "06:00"
    # The previous shift (22:00-06:00 has none: 8 hours off, no data before).
    browser.find_element(By.ID, "earlier").click()
    wait.until(lambda d: "07:" not in d.find_element(By.ID, "window").text
               and d.find_elements(By.CSS_SELECTOR, '#row-press-1 .seg[data-kind="off"]'))
    # In French.
    browser.find_element(By.ID, "lang").click()
    wait.until(lambda d: d.find_element(By.ID, "earlier").text == "◀ avant")
    legend = browser.find_element(By.ID, "band-legend").text
    assert "hors poste" in legend
    assert "sans données" in legend
    browser.find_element(By.ID, "lang").click()


def test_pages_opened_again_and_again_still_load(plant: Plant) -> None:
    """Each page runs the live stream; leaving a page closes it, so the browser's six
    connections to the server are never all held by pages already left."""
    for page, shown in [("/", ".tile"), ("/line", "#lines .band"),
                        ("/machine?id=press-1", "#band .seg")] * 3:
        plant.browser.get("about:blank")
        plant.browser.get(f"{plant.url}{page}")
        plant.wait().until(lambda d, css=shown: d.find_elements(By.CSS_SELECTOR, css))
        plant.wait().until(lambda d: d.find_element(By.ID, "status").text == "live")


def downloaded(plant: Plant, suffix: str) -> Path:
    """The file the browser downloaded, once complete: Chromium reserves the final name
    with an empty file and writes into a `.crdownload` beside it until the end."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        files = list(plant.downloads.iterdir())
        found = [p for p in files if p.name.endswith(suffix) and p.stat().st_size]
        if found and not any(p.name.endswith(".crdownload") for p in files):
            return found[0]
        time.sleep(0.1)
    pytest.fail(f"no {suffix} downloaded into {plant.downloads}: {list(plant.downloads.iterdir())}")


def test_a_chart_reads_values_and_exports_png_and_csv(plant: Plant) -> None:
    open_machine_page(plant)
    browser = plant.browser
    chart = browser.find_element(By.ID, "chart-temp")
    labels = [e.text for e in chart.find_elements(By.CSS_SELECTOR, ".u-legend .u-series th")]
    assert labels[:4] == ["time", "temp", "min", "max"]
    assert labels[4:] == ["cusum baseline", f"cusum +3{SIGMA}", f"cusum {MINUS}3{SIGMA}"]
    # Away from the cursor, the last values; on it, the values under it.
    values = [e.text for e in chart.find_elements(By.CSS_SELECTOR, ".u-legend .u-series td")]
    assert "--" not in values
    idle = values[0]
    assert idle.endswith("11:58")  # the last bucket: 11:58:48
    over = chart.find_element(By.CSS_SELECTOR, ".u-over")
    ActionChains(browser).move_to_element_with_offset(over, -over.size["width"] // 4, 0).perform()
    hovered = plant.wait().until(lambda d: d.find_element(
        By.CSS_SELECTOR, "#chart-temp .u-legend .u-series td").text.split(" ")[-1]
        if d.find_element(By.CSS_SELECTOR, "#chart-temp .u-legend .u-series td").text != idle
        else None)
    hours, minutes = hovered.split(":")  # a quarter of the way from 06:00 to 14:00
    assert abs(60 * int(hours) + int(minutes) - 8 * 60) <= 2
    ActionChains(browser).move_to_element(browser.find_element(By.ID, "machine-name")).perform()
    plant.wait().until(lambda d: d.find_element(
        By.CSS_SELECTOR, "#chart-temp .u-legend .u-series td").text == idle)
    series = plant.api(f"/machines/press-1/signals/temp?from={stamp(at('06:00'))}"
                       f"&to={stamp(CUT)}&points=300")
    chart.find_element(By.CSS_SELECTOR, "button.export-csv").click()
    path = downloaded(plant, ".csv")
    assert path.name == "press-1-temp-2026-03-02T0600.csv"
    lines = path.read_text().splitlines()
    assert lines[0] == "# press-1 temp"
    rows = list(csv.DictReader(lines[1:]))
    assert list(rows[0]) == ["time_utc", "temp_mean", "min", "max", "cusum baseline",
                             f"cusum +3{SIGMA}", f"cusum {MINUS}3{SIGMA}"]
    assert [r["time_utc"] for r in rows] == [
        datetime.fromtimestamp(ns // 10**6 / 1000, UTC).isoformat(timespec="milliseconds")
        .replace("+00:00", "Z") for ns in series["ts_ns"]]
    assert [float(r["temp_mean"]) if r["temp_mean"] else None for r in rows] == \
        pytest.approx(series["mean"])
    chart.find_element(By.CSS_SELECTOR, "button.export-png").click()
    png = downloaded(plant, ".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(png[16:20], "big")
    assert width == browser.execute_script(
        "return document.querySelector('#chart-temp canvas').width")


def test_the_open_interval_grows_live(plant: Plant) -> None:
    """Data to 12:30 arrives and the clock moves there: the open page's open interval
    reaches 12:30 without a reload (the stream's KPI refresh, every 10 s)."""
    open_machine_page(plant)
    browser = plant.browser
    browser.execute_script("window.notReloaded = true")
    plant.replay("more.jsonl", [line for line in worked_example_lines()
                                if stamp(CUT) < json.loads(line)["ts"] <= stamp(at("12:30"))])
    plant.now[0] = to_ns(at("12:30"))
    band = box(browser, browser.find_element(By.ID, "band"))
    plant.wait().until(lambda d: box(d, d.find_element(By.CSS_SELECTOR, "#band .seg[data-open]"))
                       ["right"] == pytest.approx(band["left"] + band["width"]
                                                  * fraction(at("12:30")), abs=0.6))
    assert browser.execute_script("return window.notReloaded") is True
