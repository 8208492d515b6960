"""State names on the dashboard: a rule's name with its ISO 22400 category named and
explained (tooltip and legend), in English and French (OEE is TRS; categories and the
OPC 40001 / PackML state names translated), in headless Chromium."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from api.app import create_app
from api.tokens import Role, create_token
from ombre.config import load_config
from shadow.calendar import to_ns
from shadow.schema import open_engine
from tests.api.conftest import serving
from tests.shadow.scenarios import C_DAY, at, line_plant, reading, scenario_c_lines
from tests.shadow.test_replay import Shop

# The demo press's stack light and mould-change switch, read through named rules.
NAMED_RULES = {"type": "rules", "rules": [
    {"name": "mould change", "when": [{"signal": "mould_change", "op": "==", "value": 1}],
     "category": "ASUT"},
    {"name": "producing", "when": [{"signal": "light", "op": "==", "value": "GREEN"}],
     "category": "APT"},
    {"name": "idle, job loaded", "job": True, "category": "ADET",
     "when": [{"signal": "light", "op": "==", "value": "YELLOW"}]},
    {"name": "idle, no job", "job": False, "category": "ADOT",
     "when": [{"signal": "light", "op": "==", "value": "YELLOW"}]},
]}
PRESS = {"id": "press-2", "signals": [{"name": "light", "type": "string"},
                                      {"name": "order", "type": "string"},
                                      {"name": "mould_change"}],
         "state": NAMED_RULES, "job_signal": "order"}


@pytest.fixture
def served(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[str, str]]:
    shop = Shop(tmp_path, None, [])
    data = line_plant(tmp_path / "data")
    data["sites"][0]["lines"][0]["machines"].append(PRESS)
    shop.config.write_text(json.dumps(data))
    press = [reading(at("06:00", C_DAY), "order", "J9", "press-2"),
             reading(at("06:00", C_DAY), "mould_change", 0, "press-2")]
    press += [reading(at("06:00", C_DAY) + timedelta(minutes=i), "light",
                      "GREEN" if i < 110 else "YELLOW", "press-2") for i in range(121)]
    lines = sorted([*scenario_c_lines(), *press], key=lambda x: str(json.loads(x)["ts"]))
    assert shop.ombre(capsys, "replay", str(shop.write("c.jsonl", lines)))[0] == 0
    engine = open_engine(shop.engine_url())
    try:
        token = create_token(engine, "screen", Role.VIEWER)
    finally:
        engine.dispose()
    config = load_config(shop.config, {})
    with serving(create_app(config, clock=lambda: to_ns(at("08:01", C_DAY)))) as url:
        yield url, token


def test_a_rules_name_and_its_category_explained_in_english_and_french(
        served: tuple[str, str], browser: webdriver.Chrome, tmp_path: Path) -> None:
    url, token = served
    request = urllib.request.Request(f"{url}/api/v1/machines",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        machines = {m["id"]: m for m in json.load(response)}
    assert (machines["press-2"]["state"], machines["press-2"]["category"]) == \
        ("idle, job loaded", "ADET")
    assert machines["pack-1"]["state"] == "Idle/Production"

    browser.get(f"{url}/#token={token}")
    browser.execute_script("localStorage.setItem('ombre-lang', 'en')")
    browser.get(f"{url}/")
    wait = WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException])

    def state(machine: str) -> tuple[str, str]:
        """Read within the wait: the live stream redraws a tile at any moment."""
        def read(d: webdriver.Chrome) -> tuple[str, str]:
            el = d.find_element(By.CSS_SELECTOR, f"#machine-{machine} .state")
            return el.text, el.get_attribute("title") or ""
        return wait.until(read)

    wait.until(lambda d: "ADET" in d.find_element(By.CSS_SELECTOR, "#machine-press-2 .state")
               .text)
    assert state("press-2") == ("idle, job loaded · unplanned stop (ADET)",
                                "ADET: actual unit delay time: an unplanned stop while a job "
                                "is on the machine (breakdown, minor stop, waiting)")
    assert state("pack-1")[0] == "Idle/Production · idle, no job (ADOT)"
    assert browser.find_element(By.CSS_SELECTOR, "#machine-press-2 .oee").text \
        .startswith("OEE ")
    legend = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#legend li")]
    assert legend[0] == "production (APT): actual production time: running and producing " \
                        "for a job"
    assert [e.split(":")[0] for e in legend] == [
        "production (APT)", "setup (ASUT)", "unplanned stop (ADET)", "idle, no job (ADOT)",
        "planned stop (PDOT)"]

    browser.find_element(By.ID, "lang").click()
    wait.until(lambda d: "TRS" in d.find_element(By.CSS_SELECTOR, "#machine-press-2 .oee").text)
    assert state("press-2")[0] == "idle, job loaded · arrêt non planifié (ADET)"
    assert state("pack-1")[0] == "au repos / production · arrêt sans OF (ADOT)"
    assert state("cnc-1")[0] == "à l'arrêt / production · arrêt sans OF (ADOT)"
    assert state("press-2")[1].startswith("ADET: temps d'arrêt non planifié avec un OF chargé")
    assert browser.find_element(By.CSS_SELECTOR, "#legend li").text.startswith(
        "production (APT) : temps de production effectif")
    browser.save_screenshot(str(tmp_path / "names-fr.png"))
    # The machine page says the same, with the legend under its state band.
    browser.get(f"{url}/machine?id=press-2")
    state_el = wait.until(lambda d: [e for e in d.find_elements(By.ID, "state")
                                     if "(ADET)" in e.text])[0]
    assert state_el.text == "idle, job loaded · arrêt non planifié (ADET)"
    assert (state_el.get_attribute("title") or "").startswith("ADET: temps d'arrêt non planifié")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#band div"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#legend li")) == 5
    browser.save_screenshot(str(tmp_path / "machine-fr.png"))
