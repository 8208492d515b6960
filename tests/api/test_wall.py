"""The overview on a 1920x1080 wall display and a tablet, and its wall (andon) mode, in
a real headless Chromium against the API served by uvicorn: a plant of two lines (the
worked example's press on one, scenario C's CNC and packer on the other), at 07:10 on
scenario C's day."""

from __future__ import annotations

import contextlib
import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from api.app import create_app
from api.tokens import Role, create_token
from bench.mosquitto import free_port
from ombre.cli import main
from ombre.cli_common import EXIT_USAGE
from ombre.config import load_config
from shadow.calendar import to_ns
from shadow.schema import open_engine
from tests.api.conftest import chromium, serving
from tests.shadow.scenarios import (
    C_DAY,
    WORKED_ORDERS_CSV,
    at,
    line_plant,
    scenario_c_lines,
    worked_example_lines,
)
from tests.shadow.test_replay import WORKED_STOP, Shop

NONE = "\u2013"  # what the page shows for a KPI without a value (an en dash)
NOW = at("08:01", C_DAY)  # a minute after scenario C's last reading; the press silent
SHIFT = ("2026-03-04T06:00:00Z", "2026-03-04T08:01:00Z")  # the current shift so far
COLOURS = {"APT": "rgba(27, 138, 58, 1)", "ASUT": "rgba(31, 111, 209, 1)",  # style.css
           "ADET": "rgba(198, 40, 40, 1)", "ADOT": "rgba(224, 160, 0, 1)",
           "PDOT": "rgba(109, 109, 109, 1)", "none": "rgba(158, 158, 158, 1)"}


class Plant:
    def __init__(self, shop: Shop, viewer: str, kiosk: str) -> None:
        self.shop, self.viewer, self.kiosk = shop, viewer, kiosk

    def ombre(self, *args: str) -> str:
        """`ombre ARGS -c CONFIG`'s output; fails the test on a non-zero exit."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([*args, "-c", str(self.shop.config)])
        assert code == 0, err.getvalue()
        return out.getvalue()

    def kpi(self, *args: str, start: str = SHIFT[0], end: str = SHIFT[1]) -> Any:
        return json.loads(self.ombre("kpi", "--from", start, "--to", end, "--json", *args))

    def app(self, now_ns: int = to_ns(NOW)) -> Any:
        return create_app(load_config(self.shop.config, {}), clock=lambda: now_ns)


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Plant:
    tmp_path = tmp_path_factory.mktemp("wall")
    shop = Shop(tmp_path, None, [WORKED_STOP])
    data = json.loads(shop.config.read_text())
    data["sites"][0]["lines"][0]["name"] = "Moulding"
    data["sites"][0]["lines"].append({**line_plant(tmp_path)["sites"][0]["lines"][0],
                                      "name": "Machining"})
    shop.config.write_text(json.dumps(data))
    found = Plant(shop, "", "")
    found.ombre("orders", "import", str(shop.write("orders.csv", WORKED_ORDERS_CSV)))
    found.ombre("replay", str(shop.write("shift.jsonl", worked_example_lines())))
    found.ombre("replay", str(shop.write("c.jsonl", scenario_c_lines())))
    found.kiosk = found.ombre("token", "create", "--kiosk", "--name", "hall wall").strip()
    engine = open_engine(shop.engine_url())
    try:
        found.viewer = create_token(engine, "screen", Role.VIEWER)
    finally:
        engine.dispose()
    return found


@pytest.fixture(scope="module")
def url(plant: Plant) -> Iterator[str]:
    with serving(plant.app()) as found:
        yield found


@pytest.fixture(scope="module")
def wall() -> Iterator[webdriver.Chrome]:
    """Chromium whose page is 1920x1080 CSS pixels (its window's frame left out)."""
    driver = chromium(1920, 1080)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False})
    try:
        yield driver
    finally:
        driver.quit()


def waiting(driver: webdriver.Chrome) -> WebDriverWait[webdriver.Chrome]:
    return WebDriverWait(driver, 20, ignored_exceptions=[StaleElementReferenceException])


def loaded(driver: webdriver.Chrome) -> None:
    """Waits for the stream's first KPIs and the 7-day trend."""
    wait = waiting(driver)
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#plant .coverage")
               .get_attribute("data-value"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#trend g[data-series="plant"] circle'))


# The share of the viewport that the page's content covers: the union of the boxes of
# its visible leaf-level blocks (tiles, headings, chart, lists), painted on a grid of
# 20-pixel cells; and the page's size against the viewport's.
FILL = """
const w = innerWidth, h = innerHeight, cell = 20;
const cols = Math.ceil(w / cell), rows = Math.ceil(h / cell);
const covered = new Uint8Array(cols * rows);
const blocks = document.querySelectorAll(
  "header, #plant, .line-head, .tile, #side > section");
for (const e of blocks) {
  const r = e.getBoundingClientRect();
  if (!r.width || !r.height) continue;
  const y0 = Math.max(0, Math.floor(r.top / cell)), y1 = Math.min(rows, Math.ceil(r.bottom / cell));
  const x0 = Math.max(0, Math.floor(r.left / cell)), x1 = Math.min(cols, Math.ceil(r.right / cell));
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) covered[y * cols + x] = 1;
}
return [covered.reduce((a, b) => a + b, 0) / (cols * rows),
        document.documentElement.scrollWidth - w, document.documentElement.scrollHeight - h];
"""


def test_the_overview_fills_a_wall_display_with_the_plant_its_lines_and_machines(
        plant: Plant, url: str, wall: webdriver.Chrome, tmp_path: Path) -> None:
    wall.get(f"{url}/#token={plant.viewer}")
    loaded(wall)
    # Every machine, in its line, coloured by its ISO 22400 category now.
    machines = {m["id"]: m for m in json.loads(wall.execute_script(
        "return fetch('/api/v1/machines', {headers: {Authorization: `Bearer ${Ombre.token}`}})"
        ".then((r) => r.text())"))}
    assert {k: m["category"] for k, m in machines.items()} == \
        {"press-1": None, "cnc-1": "ADOT", "pack-1": "ADOT"}  # unknown: silent
    for machine, line in (("press-1", "line-1"), ("cnc-1", "line-2"), ("pack-1", "line-2")):
        tile = wall.find_element(By.CSS_SELECTOR, f"#line-{line} #machine-{machine}")
        category = machines[machine]["category"] or "none"
        assert tile.get_attribute("data-category") == category
        assert tile.value_of_css_property("background-color") == COLOURS[category]
        state = tile.find_element(By.CLASS_NAME, "state").text
        assert state.startswith(machines[machine]["state"])
    assert "offline" in wall.find_element(By.ID, "machine-press-1").text  # silent since 03-02
    # Time in state: the CNC idle since 08:00, the press unknown since 14:02 two days ago.
    assert wall.find_element(By.CSS_SELECTOR, "#machine-cnc-1 .since").text == "for 1 min"
    assert wall.find_element(By.CSS_SELECTOR, "#machine-press-1 .since").text == "for 41 h 58"
    # The plant's and each line's OEE of the shift so far and its factors, as `ombre kpi`
    # computes them (no OEE: scenario C's parts have no planned run time per unit).
    for selector, args in (("#plant", ()), ("#line-line-2 .line-head", ("--line", "line-2"))):
        [expected] = plant.kpi(*args)
        k = {name: kpi["value"] for name, kpi in expected["kpis"].items()}
        shown = wall.find_element(By.CSS_SELECTOR, selector)
        assert (k["oee"], shown.find_element(By.CLASS_NAME, "oee").get_attribute("data-value")) \
            == (None, "")
        assert shown.find_element(By.CLASS_NAME, "factors").text == \
            f"availability {100 * k['availability']:.1f} % · performance {NONE} · quality " \
            f"{100 * k['quality_ratio']:.1f} %"
        assert float(shown.find_element(By.CLASS_NAME, "coverage").get_attribute("data-value")
                     or "nan") == pytest.approx(expected["coverage"]["value"], abs=1e-12)
    assert wall.find_element(By.CSS_SELECTOR, "#line-line-2 .line-head").text \
        .startswith(f"Machining\nOEE {NONE}")
    # The OEE per shift over 7 days: the plant's and each line's, one point per shift with
    # an OEE, the numbers of `ombre kpi --by shift`.
    week = plant.kpi("--by", "shift", start="2026-02-25T07:10:00Z", end=SHIFT[1])
    expected_points = sorted(r["kpis"]["oee"]["value"] for r in week
                             if r["kpis"]["oee"]["value"] is not None)
    points = sorted(float(e.get_attribute("data-oee") or "nan") for e in wall.find_elements(
        By.CSS_SELECTOR, '#trend g[data-series="plant"] circle'))
    assert len(points) == len(expected_points) == 1  # 03-02 early; 03-04 has no PRU
    assert points == pytest.approx(expected_points, abs=1e-12)
    assert [len(g.find_elements(By.TAG_NAME, "circle")) for g in wall.find_elements(
        By.CSS_SELECTOR, "#trend g[data-series]")] == [1, 1, 0]  # the plant, line-1, line-2
    # No empty half screen, and nothing to scroll to.
    covered, wider, taller = wall.execute_script(FILL)
    assert (wider, taller) == (0, 0)
    assert covered > 0.9, covered
    wall.save_screenshot(str(tmp_path / "overview.png"))
    # In French: TRS for OEE, the trend's title, the time in state.
    wall.find_element(By.ID, "lang").click()
    assert wall.find_element(By.CSS_SELECTOR, "#plant .oee").text == f"TRS {NONE}"
    assert wall.find_element(By.CSS_SELECTOR, "#trend-box h2").text == \
        "TRS par poste, 7 derniers jours"
    assert wall.find_element(By.CSS_SELECTOR, "#machine-cnc-1 .since").text == "depuis 1 min"
    wall.find_element(By.ID, "lang").click()
    # A tablet, landscape: the same, filled, and nothing beyond its edges.
    tablet = chromium(1280, 800, tablet=True)
    try:
        tablet.get(f"{url}/#token={plant.viewer}")
        loaded(tablet)
        covered, wider, _ = tablet.execute_script(FILL)
        assert wider == 0
        assert covered > 0.85, covered
        tablet.save_screenshot(str(tmp_path / "overview-tablet.png"))
    finally:
        tablet.quit()


def visible_lines(driver: webdriver.Chrome) -> list[str]:
    """The lines shown, read at one instant: element by element, a page turning in
    between would show both."""
    shown: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('#tiles > .line')]"
        ".filter((e) => e.getClientRects().length).map((e) => e.dataset.line)")
    return shown


def test_the_wall_mode_shows_the_lines_in_turn_with_large_type_and_no_controls(
        plant: Plant, url: str, wall: webdriver.Chrome, tmp_path: Path) -> None:
    wall.get("about:blank")
    wall.get(f"{url}/wall?lines=1&every=2#token={plant.kiosk}")
    loaded(wall)
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while set(seen) != {"line-1", "line-2"} and time.monotonic() < deadline:
        shown = visible_lines(wall)
        assert len(shown) == 1, shown  # one line a page
        if not seen or seen[-1] != shown[0]:
            seen.append(shown[0])
        time.sleep(0.2)
    assert seen[:2] in (["line-1", "line-2"], ["line-2", "line-1"]), seen
    # Nothing to click: no navigation, no language button; the plant, the trend and the
    # alerts stay on every page.
    controls = [e.tag_name for e in wall.find_elements(By.CSS_SELECTOR, "a, button, input")
                if e.is_displayed() and e.value_of_css_property("pointer-events") != "none"]
    assert controls == []
    for shown in ("plant", "trend", "alerts"):
        assert wall.find_element(By.ID, shown).is_displayed()
    # Large type: the machine's OEE at least 64 px high on 1920x1080.
    oee = wall.find_element(By.CSS_SELECTOR, ".line:not([hidden]) .tile .oee")
    assert float(oee.value_of_css_property("font-size").removesuffix("px")) >= 64
    covered, wider, taller = wall.execute_script(FILL)
    assert (wider, taller) == (0, 0)
    assert covered > 0.9, covered
    wall.save_screenshot(str(tmp_path / "wall.png"))


def since(driver: webdriver.Chrome, machine: str) -> str:
    """The tile's time in state, shown or on a page of lines not shown now."""
    return driver.find_element(By.CSS_SELECTOR, f"#machine-{machine} .since") \
        .get_attribute("textContent") or ""


def test_the_wall_reconnects_by_itself_after_the_server_restarts(
        plant: Plant, wall: webdriver.Chrome) -> None:
    """The served app stops, then starts again on the same port (a gateway restart):
    the wall page, never reloaded, reads the new server's stream with its kiosk token."""
    port = free_port()
    wait = waiting(wall)
    with serving(plant.app(), port) as url:
        wall.get("about:blank")
        wall.get(f"{url}/wall#token={plant.kiosk}")
        loaded(wall)
        wall.execute_script("window.notReloaded = true")
        assert since(wall, "pack-1") == "for 1 min"
    wait.until(lambda d: d.find_element(By.ID, "status").text == "reconnecting…")
    later = at("08:31", C_DAY)  # the new server's clock: 30 minutes on
    with serving(plant.app(to_ns(later)), port):
        wait.until(lambda d: since(d, "pack-1") == "for 31 min")
        assert wall.find_element(By.ID, "status").text == "live"
        assert wall.execute_script("return window.notReloaded") is True
        assert not wall.find_element(By.ID, "login").is_displayed()
        assert wall.current_url == f"http://127.0.0.1:{port}/wall"


def test_a_kiosk_token_may_only_view_and_is_listed_as_such(plant: Plant, url: str) -> None:
    listed = plant.ombre("token", "list")
    assert "\thall wall\tviewer, kiosk\tcreated " in listed
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["token", "create", "--kiosk", "--role", "operator", "--name", "x", "-c",
                     str(plant.shop.config)])
    assert (code, err.getvalue()) == (
        EXIT_USAGE, "ombre token create: a kiosk token is a viewer's, not an operator's\n")
    auth = {"Authorization": f"Bearer {plant.kiosk}"}
    with urllib.request.urlopen(urllib.request.Request(f"{url}/api/v1/machines",
                                                       headers=auth)) as response:
        assert response.status == 200
    request = urllib.request.Request(f"{url}/api/v1/alerts/1/ack", data=b"{}", method="POST",
                                     headers={**auth, "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    refused.value.close()
    assert refused.value.code == 403
