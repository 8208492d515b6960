"""Lost time by cause and by machine (GET /api/v1/losses and the /losses page) on two
presses replayed through `ombre replay`: the worked example of docs/kpi.md, and the
same shift on a press whose PLC gives stop reasons. In a real headless Chromium at
1920x1080, against the API served by uvicorn on a free port."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from api.app import create_app
from api.tokens import Role, create_token
from ombre.cli import main
from ombre.config import load_config
from shadow.calendar import to_ns
from shadow.schema import database_url, open_engine
from tests.api.conftest import chromium, serving
from tests.shadow.scenarios import (
    REASON_CODES_CSV,
    WORKED_ORDERS_CSV,
    at,
    plant,
    reason_example_lines,
    reason_machine,
    worked_example_lines,
)
from tests.shadow.test_replay import WORKED_STOP

SHIFT = ("2026-03-02T06:00:00Z", "2026-03-02T14:00:00Z")
ORDERS = WORKED_ORDERS_CSV + "4712,BRKT-20,480,0.75,10,press-2\n"


@dataclass(frozen=True)
class Served:
    dir: Path
    config: Path
    url: str
    viewer: str
    client: httpx.Client

    def get(self, path: str, **params: str) -> httpx.Response:
        return self.client.get(f"/api/v1{path}", params=params,
                               headers={"Authorization": f"Bearer {self.viewer}"})


def ombre(config: Path, command: str, *args: str) -> None:
    assert main([*command.split(), "-c", str(config), *args]) == 0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """press-1 runs the worked example (order 4711); press-2 the same shift with a
    STOPPED state and stop reasons (order 4712). An operator then gives press-1's
    08:35 breakdown the reason `tool`."""
    tmp = tmp_path_factory.mktemp("losses")
    data = plant(tmp / "data")
    data["shadow"]["calendar"]["planned_stops"] = [WORKED_STOP]
    press1 = data["sites"][0]["lines"][0]["machines"][0]
    press2 = {**copy.deepcopy(press1), **reason_machine(), "id": "press-2",
              "reason": {"signal": "stop_reason", "grace_s": 5}}
    data["sites"][0]["lines"][0]["machines"].append(press2)
    config = tmp / "plant.yaml"
    config.write_text(json.dumps(data))
    second = [json.dumps({**row, "machine": "press-2",
                          "value": "4712" if row["value"] == "4711" else row["value"]})
              for row in map(json.loads, reason_example_lines())]
    lines = sorted([*worked_example_lines(), *second], key=lambda x: str(json.loads(x)["ts"]))
    for name, content in (("orders.csv", ORDERS), ("codes.csv", REASON_CODES_CSV),
                          ("shift.jsonl", "\n".join(lines) + "\n")):
        (tmp / name).write_text(content)
    ombre(config, "orders import", str(tmp / "orders.csv"))
    ombre(config, "reasons import", str(tmp / "codes.csv"))
    ombre(config, "replay", str(tmp / "shift.jsonl"))
    loaded = load_config(config, {})
    engine = open_engine(database_url(loaded.shadow.database, loaded.data_dir))
    try:
        viewer = create_token(engine, "screen", Role.VIEWER)
        operator = create_token(engine, "op", Role.OPERATOR)
    finally:
        engine.dispose()
    with serving(create_app(loaded, clock=lambda: to_ns(at("13:59")))) as url, \
            httpx.Client(base_url=url, timeout=60) as client:
        served = Served(tmp, config, url, viewer, client)
        [stop] = [d for d in served.get("/downtime", machine="press-1", **{"from": SHIFT[0]},
                                        to=SHIFT[1]).json()
                  if d["start_ns"] == to_ns(at("08:35"))]
        assert client.post(f"/api/v1/downtime/{stop['id']}/reason", json={"code": "tool"},
                           headers={"Authorization": f"Bearer {operator}"}).status_code == 200
        yield served


def kpi_losses(served: Served, machine: str, capsys: pytest.CaptureFixture[str]) -> float:
    """The machine's lost seconds as `ombre kpi` reports them: availability, performance
    and quality losses."""
    capsys.readouterr()
    assert main(["kpi", "-c", str(served.config), "--machine", machine, "--from", SHIFT[0],
                 "--to", SHIFT[1], "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    loss = result["losses"]
    return float(loss["availability_s"] + loss["performance_s"] + loss["quality_s"])


def test_the_api_lays_every_lost_minute_of_the_kpis_on_a_cause(
        served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    found = served.get("/losses", window="shift", at="2026-03-02T09:00:00Z")
    assert found.status_code == 200, found.text
    report: dict[str, Any] = found.json()
    assert (report["kind"], report["window"]) == ("shift", {"start_ns": to_ns(at("06:00")),
                                                            "end_ns": to_ns(at("14:00"))})
    expected = {m: kpi_losses(served, m, capsys) for m in ("press-1", "press-2")}
    assert expected == pytest.approx({"press-1": 105 * 60, "press-2": 105 * 60}, abs=1e-6)
    assert report["kpi_losses_s"] == pytest.approx(expected, abs=1e-6)
    assert {b["key"]: b["lost_s"] for b in report["by_machine"]} == pytest.approx(expected,
                                                                                  abs=1e-6)
    # press-1: ADOT 15 and the 11:20 breakdown 10 unexplained, `tool` 15, setup 20, speed
    # 30, defects 13.5, startup 1.5; press-2: ADOT 15 and E917 7 unexplained,
    # SPINDLE_FAULT 15, setup 20, speed 33, defects 13.5, startup 1.5.
    assert [(b["cause"], b["key"], round(b["lost_s"] / 60, 6)) for b in report["by_reason"]] \
        == [("speed", "speed", 63), ("unexplained", "unexplained", 47), ("setup", "setup", 40),
            ("defects", "defects", 27), ("reason", "SPINDLE_FAULT", 15),
            ("reason", "tool", 15), ("startup_rejects", "startup_rejects", 3)]
    assert report["lost_s"] == pytest.approx(sum(expected.values()), abs=1e-6)
    assert report["unexplained_s"] == 47 * 60
    assert {k: round(v / 60, 6) for k, v in report["by_family"].items()} == \
        {"availability": 117, "performance": 63, "quality": 30}
    assert {k: round(v / 60, 6) for k, v in report["by_big_loss"].items()} == {
        "breakdowns": 40, "setup_adjustments": 40, "idling_minor_stops": 37,
        "reduced_speed": 63, "process_defects": 27, "startup_rejects": 3}
    assert report["reason_texts"] == {"SPINDLE_FAULT": "spindle drive fault",
                                      "tool": "tool broke"}
    one = served.get("/losses", window="day", at="2026-03-02T23:00:00", machine="press-2",
                     max_pieces="1").json()
    assert one["window"]["start_ns"] == to_ns(at("00:00"))
    assert one["machines"] == ["press-2"]
    # The day holds 1 s more: the presses idle from 14:00 to their last reading (14:00:01),
    # in the late shift.
    assert one["lost_s"] == pytest.approx(one["kpi_losses_s"]["press-2"], abs=1e-6)
    assert one["lost_s"] == pytest.approx(expected["press-2"] + 1, abs=1e-6)
    assert [(b["pieces_total"], len(b["pieces"])) for b in one["by_reason"]][:2] == \
        [(3, 1), (3, 1)]  # speed; unexplained (with the second after 14:00)
    week = served.get("/losses", window="week", at="2026-03-08T12:00:00Z").json()
    assert week["window"] == {"start_ns": to_ns(at("00:00")),
                              "end_ns": to_ns(at("00:00")) + 7 * 86_400 * 10**9}
    assert week["lost_s"] == pytest.approx(report["lost_s"] + 2, abs=1e-6)


@pytest.mark.parametrize(("params", "status", "says"), [
    ({"window": "month"}, 422, "shift"),
    ({"at": "yesterday"}, 422, "datetime"),
    ({"at": "3000-01-01T00:00:00Z"}, 400, "`at` must be from"),
    ({"at": "2026-03-02T23:00:00Z"}, 404, "no shift of the calendar holds 2026-03-02T23:00"),
    ({"machine": "press-9"}, 404, "no machine 'press-9'"),
    ({"line": "line-9"}, 404, "no line 'line-9'"),
    ({"machine": "press-1", "line": "line-1"}, 400, "not two"),
    ({"max_pieces": "0"}, 422, "max_pieces"),
])
def test_bad_input_is_a_4xx_that_says_what_is_wrong(
        served: Served, params: dict[str, str], status: int, says: str) -> None:
    found = served.get("/losses", **params)
    assert found.status_code == status, found.text
    assert says in found.text


def test_a_viewer_token_is_needed(served: Served) -> None:
    assert served.client.get("/api/v1/losses").status_code == 401


def bar_rows(driver: Any, kind: str) -> list[WebElement]:
    rows: list[WebElement] = driver.find_elements(By.CSS_SELECTOR, f"#bars-{kind} tr")
    return rows


def test_the_pareto_in_chromium_lists_the_intervals_behind_a_clicked_bar(
        served: Served, tmp_path: Path) -> None:
    driver = chromium(1920, 1080)
    try:  # the page itself 1920x1080, whatever the window's frame takes
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False})
        driver.get(f"{served.url}/#token={served.viewer}")
        wait = WebDriverWait(driver, 20, ignored_exceptions=[StaleElementReferenceException])
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, 'header a[href="/losses"]')
                   ).click()
        # The clock says 13:59: the page opens on the 06:00-14:00 shift.
        wait.until(lambda d: d.find_element(By.ID, "page").get_attribute("data-loaded")
                   == f"shift:{to_ns(at('06:00'))}")
        causes = bar_rows(driver, "cause")
        assert [r.get_attribute("data-key") for r in causes] == [
            "speed", "unexplained", "setup", "defects", "SPINDLE_FAULT", "tool",
            "startup_rejects"]
        assert "No reason given" in causes[1].text
        assert "SPINDLE_FAULT · spindle drive fault" in causes[4].text
        assert [r.get_attribute("data-key") for r in bar_rows(driver, "machine")] == \
            ["press-1", "press-2"]
        summary = driver.find_element(By.ID, "summary").text
        assert "210.0 min lost in total (the KPIs say: 210.0 min)" in summary
        assert "downtime still to explain: 47.0 min" in summary
        big = {e.get_attribute("data-key"): e.text
               for e in driver.find_elements(By.CSS_SELECTOR, "#big-losses .bar")}
        assert big["breakdowns"] == "breakdowns: 40.0 min"
        assert len(big) == 6  # no time of unknown state here
        # A click on the unexplained bar of the chart itself lists its four intervals.
        canvas = driver.find_element(By.CSS_SELECTOR, "#chart-cause .u-over")
        x, y = driver.execute_script(
            "const u = charts.cause; return [u.valToPos(1, 'x'), u.valToPos(20, 'y')];")
        width, height = canvas.size["width"], canvas.size["height"]
        ActionChains(driver).move_to_element_with_offset(
            canvas, int(x - width / 2), int(y - height / 2)).click().perform()
        rows = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#pieces tr.piece"))
        assert "bar-cause-1" in [r.get_attribute("id") for r in driver.find_elements(
            By.CSS_SELECTOR, "#bars-cause tr.selected")]
        assert [(r.find_elements(By.TAG_NAME, "td")[0].text, r.get_attribute("data-start"))
                for r in rows] == [
            ("press-1", str(to_ns(at("06:00")))), ("press-2", str(to_ns(at("06:00")))),
            ("press-1", str(to_ns(at("11:20")))), ("press-2", str(to_ns(at("11:20"))))]
        assert "breakdowns" in rows[2].text
        assert "E917" in rows[3].text
        assert "idling and minor stops" in rows[3].text
        assert sum(float(r.get_attribute("data-lost-s") or "nan") for r in rows) == 47 * 60
        driver.save_screenshot(str(tmp_path / "pareto.png"))
        # A row of the machine table works the same; French on the same page.
        bar_rows(driver, "machine")[1].click()
        wait.until(lambda d: "press-2" in d.find_element(By.ID, "pieces-title").text)
        driver.find_element(By.ID, "lang").click()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "h1").text == "Temps perdu")
        assert "Sans motif" in bar_rows(driver, "cause")[1].text
        assert "selon les indicateurs" in driver.find_element(By.ID, "summary").text
        assert driver.find_element(By.CSS_SELECTOR, '#big-losses .bar[data-key="breakdowns"]'
                                   ).text == "pannes : 40.0 min"
        driver.save_screenshot(str(tmp_path / "pareto-fr.png"))
        driver.find_element(By.ID, "lang").click()
        # The week holds the one shift with data, and the 2 s after it.
        Select(driver.find_element(By.ID, "kind")).select_by_value("week")
        wait.until(lambda d: (d.find_element(By.ID, "page").get_attribute("data-loaded") or ""
                              ).startswith("week:"))
        assert float(driver.find_element(By.ID, "summary").get_attribute("data-lost-s")
                     or "nan") == pytest.approx(210 * 60 + 2, abs=1e-6)
        # On a tablet in portrait the charts stack, and nothing needs a sideways scroll.
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 800, "height": 1280, "deviceScaleFactor": 2, "mobile": True})
        wait.until(lambda d: d.execute_script("return charts.cause.width") <= 800)
        assert driver.execute_script("const e = document.documentElement; "
                                     "return e.scrollWidth <= e.clientWidth")
        driver.save_screenshot(str(tmp_path / "pareto-tablet.png"))
    finally:
        driver.quit()
