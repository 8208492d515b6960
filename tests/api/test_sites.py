"""Sites and lines in the API and the dashboard: every listing filters by `site` and
`line`, and a token scoped to a site sees that site only, as if the others did not
exist (404, never 403, for what lies outside); what covers the whole plant refuses it
(403). A plant of two sites, on SQLite and on the real PostgreSQL: Lyon (line-1,
press-1, the worked example and scenario D's drift) and Turin (area body, line-2,
press-2, a shift of its own and the same drift)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from api.app import create_app
from api.tokens import Role, create_token
from ombre.cli_common import EXIT_USAGE
from ombre.config import load_config
from shadow.calendar import to_ns
from shadow.schema import open_engine
from tests.api.conftest import chromium, serving
from tests.shadow.scenarios import D_DAY, at, scenario_d_lines, worked_example_lines
from tests.shadow.test_drift_alerts import RAMP_WATCH
from tests.shadow.test_replay import WORKED_STOP, Shop, replay_worked_example

SHIFT = {"from": "2026-03-02T06:00:00Z", "to": "2026-03-02T14:00:00Z"}
TURIN_STATES = [("06:00", "IDLE", ""), ("06:15", "RUNNING", "4712"),
                ("10:00", "BREAKDOWN", "4712"), ("11:00", "RUNNING", "4712"),
                ("13:30", "IDLE", ""), ("14:00", "IDLE", "")]
TURIN_RUNNING = [("06:15", "10:00"), ("11:00", "13:30")]


def as_press_2(lines: Iterator[str]) -> list[str]:
    return [json.dumps({**json.loads(line), "machine": "press-2"}) for line in lines]


def two_sites(shop: Shop) -> None:
    """Rewrites the shop's one-press plant as two sites with a press each."""
    data = json.loads(shop.config.read_text())
    [site] = data["sites"]
    press = site["lines"][0]["machines"][0]
    data["sites"] = [
        {"id": "lyon", "name": "Lyon", "lines": [{"id": "line-1", "machines": [press]}]},
        {"id": "turin", "name": "Turin", "areas": [{"id": "body", "lines": [
            {"id": "line-2", "name": "Body line", "machines": [{**press, "id": "press-2"}]}]}]}]
    shop.config.write_text(json.dumps(data))


def two_site_shop(tmp_path: Path, database: str | None,
                  capsys: pytest.CaptureFixture[str]) -> Shop:
    shop = Shop(tmp_path, database, [WORKED_STOP], drift=[RAMP_WATCH])
    two_sites(shop)
    replay_worked_example(shop, capsys)
    turin = worked_example_lines(states=TURIN_STATES, running=TURIN_RUNNING)
    for name, lines in (("turin.jsonl", as_press_2(turin)),
                        ("d1.jsonl", list(scenario_d_lines())),
                        ("d2.jsonl", as_press_2(scenario_d_lines(seed=8)))):
        code, _, err = shop.ombre(capsys, "replay", str(shop.write(name, lines)))
        assert code == 0, err
    return shop


class Api:
    """The app over the two-site shop, with a plant-wide token per role and a Lyon
    viewer's and operator's."""

    def __init__(self, shop: Shop, client: TestClient) -> None:
        self.shop, self.client = shop, client
        engine = open_engine(shop.engine_url())
        try:
            self.tokens = {role.name.lower(): create_token(engine, role.name.lower(), role)
                           for role in Role}
            for role in (Role.VIEWER, Role.OPERATOR):
                self.tokens[f"lyon {role.name.lower()}"] = create_token(
                    engine, f"lyon {role.name.lower()}", role, site="lyon")
        finally:
            engine.dispose()

    def call(self, method: str, path: str, who: str = "viewer", *, json_body: object = None,
             **params: object) -> tuple[int, Any]:
        response = self.client.request(method, f"/api/v1{path}", params=params, json=json_body,
                                        headers={"Authorization": f"Bearer {self.tokens[who]}"})
        return response.status_code, response.json()

    def get(self, path: str, who: str = "viewer", **params: object) -> Any:
        status, body = self.call("GET", path, who, **params)
        assert status == 200, body
        return body


@pytest.fixture
def api(tmp_path: Path, database: str | None,
        capsys: pytest.CaptureFixture[str]) -> Iterator[Api]:
    shop = two_site_shop(tmp_path, database, capsys)
    clock = to_ns(at("08:01", D_DAY))
    with TestClient(create_app(load_config(shop.config, {}), clock=lambda: clock)) as client:
        yield Api(shop, client)


def test_sites_and_lines_are_listed_and_each_listing_filters_by_them(api: Api) -> None:
    sites = api.get("/sites")
    assert sites == [
        {"id": "lyon", "name": "Lyon", "lines": [
            {"id": "line-1", "name": None, "area": None, "machines": ["press-1"]}]},
        {"id": "turin", "name": "Turin", "lines": [
            {"id": "line-2", "name": "Body line", "area": "body", "machines": ["press-2"]}]}]
    machines = api.get("/machines")
    assert [(m["id"], m["site"], m["area"], m["line"]) for m in machines] == [
        ("press-1", "lyon", None, "line-1"), ("press-2", "turin", "body", "line-2")]
    assert [m["id"] for m in api.get("/machines", site="turin")] == ["press-2"]
    assert [m["id"] for m in api.get("/machines", line="line-1")] == ["press-1"]
    alerts = api.get("/alerts")
    assert {a["machine"] for a in alerts} == {"press-1", "press-2"}
    assert {a["machine"] for a in api.get("/alerts", site="turin")} == {"press-2"}
    assert {a["machine"] for a in api.get("/alerts", line="line-1")} == {"press-1"}
    downtime = api.get("/downtime", **SHIFT)
    assert {d["machine"] for d in downtime} == {"press-1", "press-2"}
    assert {d["machine"] for d in api.get("/downtime", site="turin", **SHIFT)} == {"press-2"}
    band = api.get("/timeline", site="turin", **SHIFT)
    assert [m["id"] for m in band["machines"]] == ["press-2"]
    for path in ("/machines", "/alerts", "/kpis", "/timeline", "/losses"):
        assert api.call("GET", path, site="paris") == (
            404, {"detail": "no site 'paris' in the config"})
        status, body = api.call("GET", path, site="lyon", line="line-1")
        assert (status, body["detail"]) == (
            400, "give one of `machine`, `line` or `site`, not two")


def test_a_site_s_kpis_are_those_of_its_machines_and_of_ombre_kpi(
        api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    lyon, turin = (api.get("/kpis", site=site, **SHIFT) for site in ("lyon", "turin"))
    assert lyon == api.get("/kpis", machine="press-1", **SHIFT)
    assert turin == api.get("/kpis", line="line-2", **SHIFT)
    assert lyon[0]["kpis"]["oee"]["value"] != turin[0]["kpis"]["oee"]["value"]
    code, out, err = api.shop.ombre(capsys, "kpi", "--site", "turin", "--from", SHIFT["from"],
                                    "--to", SHIFT["to"], "--json")
    assert code == 0, err
    assert json.loads(out) == turin
    # A Lyon token's plant is Lyon: the same numbers as the plant token's ?site=lyon.
    assert api.get("/kpis", "lyon viewer", **SHIFT) == lyon


def test_a_token_scoped_to_a_site_sees_nothing_of_the_others(api: Api) -> None:
    who = "lyon viewer"
    assert api.get("/token", who) == {"name": "lyon viewer", "role": "viewer", "site": "lyon"}
    assert api.get("/token", "admin") == {"name": "admin", "role": "admin", "site": None}
    assert [s["id"] for s in api.get("/sites", who)] == ["lyon"]
    assert [m["id"] for m in api.get("/machines", who)] == ["press-1"]
    assert {a["machine"] for a in api.get("/alerts", who)} == {"press-1"}
    assert {d["machine"] for d in api.get("/downtime", who, **SHIFT)} == {"press-1"}
    assert [m["id"] for m in api.get("/timeline", who, **SHIFT)["machines"]] == ["press-1"]
    losses = api.get("/losses", who, at="2026-03-02T10:00:00Z")
    assert {bar["key"] for bar in losses["by_machine"]} == {"press-1"}
    outside = [("/machines/press-2", {}), ("/machines/press-2/timeline", SHIFT),
               ("/machines/press-2/signals/temp", SHIFT), ("/machines", {"site": "turin"}),
               ("/kpis", {"line": "line-2"}), ("/alerts", {"machine": "press-2"}),
               ("/lines/line-2/notes", {})]
    for path, params in outside:
        status, body = api.call("GET", path, who, **params)
        assert status == 404, (path, body)
        assert "at site 'lyon'" in body["detail"], body
    assert api.call("GET", "/machines/press-9", who)[1] == {
        "detail": "no machine 'press-9' at site 'lyon'"}
    # What is the whole plant's refuses it, saying why.
    for path in ("/notifications", "/assessment", "/assessment/history"):
        assert api.call("GET", path, who) == (403, {
            "detail": "token 'lyon viewer' sees site 'lyon' only; this covers the whole plant"})
    metrics = api.client.get("/metrics", headers={
        "Authorization": f"Bearer {api.tokens[who]}"})
    assert metrics.status_code == 403


def test_a_site_s_operator_acts_on_its_site_only(api: Api) -> None:
    turin_alert = next(a for a in api.get("/alerts") if a["machine"] == "press-2")
    lyon_alert = next(a for a in api.get("/alerts") if a["machine"] == "press-1")
    turin_stop = api.get("/downtime", site="turin", **SHIFT)[0]
    lyon_stop = api.get("/downtime", site="lyon", **SHIFT)[0]
    who = "lyon operator"
    assert api.call("POST", f"/alerts/{turin_alert['id']}/ack", who) == (
        404, {"detail": f"no alert {turin_alert['id']}"})
    assert api.call("POST", f"/alerts/{turin_alert['id']}/close", who,
                    json_body={"cause": "other"})[0] == 404
    assert api.call("POST", f"/downtime/{turin_stop['id']}/reason", who,
                    json_body={"code": "tool"}) == (
        404, {"detail": f"no downtime interval {turin_stop['id']}"})
    assert api.call("POST", "/machines/press-2/job", who, json_body={"order": "4711"})[0] \
        == 404
    assert api.call("POST", "/lines/line-2/notes", who, json_body={"text": "x"})[0] == 404
    # The Turin rows are untouched; Lyon's are the operator's to act on (its alert came
    # back in control, so it is closed already: 409, not 404).
    assert turin_alert in api.get("/alerts")
    assert turin_stop in api.get("/downtime", site="turin", **SHIFT)
    assert api.call("POST", f"/alerts/{lyon_alert['id']}/ack", who) == (
        409, {"detail": f"alert {lyon_alert['id']} is closed: it cannot be acknowledged"})
    assert api.call("POST", f"/downtime/{lyon_stop['id']}/reason", who,
                    json_body={"code": "tool"})[0] == 200
    assert api.call("POST", "/orders/complete", who, json_body={"order": "4711"})[0] == 403


def test_token_create_checks_the_site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = Shop(tmp_path, None, [])
    two_sites(shop)
    code, _, err = shop.ombre(capsys, "token create", "--name", "x", "--site", "paris")
    assert (code, err) == (EXIT_USAGE, "ombre token create: no site 'paris' in the config; "
                                       "its sites: lyon, turin\n")
    code, _, err = shop.ombre(capsys, "token create", "--name", "x", "--site", "lyon",
                              "--role", "admin")
    assert (code, err) == (EXIT_USAGE, "ombre token create: an admin token sees the whole "
                                       "plant; scope a viewer's or an operator's token to a site\n")
    code, _, err = shop.ombre(capsys, "token create", "--name", "lyon screen", "--site",
                                "lyon", "--kiosk")
    assert code == 0, err
    assert "that sees site 'lyon' only" in err
    code, listed, _ = shop.ombre(capsys, "token list")
    assert "\tlyon screen\tviewer, kiosk, site lyon\tcreated " in listed
    code, log, _ = shop.ombre(capsys, "audit")
    assert code == 0
    assert '"site": "lyon"' in log


def stream_events(api: Api, who: str, **params: object) -> list[tuple[str, Any]]:
    """The events of the live stream up to its first KPI refresh."""
    events: list[tuple[str, Any]] = []
    with api.client.stream("GET", "/api/v1/stream", params=params, headers={
            "Authorization": f"Bearer {api.tokens[who]}"}) as response:
        assert response.status_code == 200
        kind = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((str(kind), json.loads(line[6:])))
                if kind == "kpis":
                    return events
    return events


def test_the_live_stream_shows_the_site_of_the_token_or_of_the_filter(api: Api) -> None:
    for who, params, machines in (("lyon viewer", {}, {"press-1"}),
                                  ("viewer", {"site": "turin"}, {"press-2"}),
                                  ("viewer", {}, {"press-1", "press-2"})):
        events = stream_events(api, who, **params)
        assert {d["id"] for k, d in events if k == "machine"} == machines
        assert {d["machine"] for k, d in events if k == "alert"} == machines
        [kpis] = [d for k, d in events if k == "kpis"]
        assert set(kpis["machines"]) == machines
    lyon = next(d for k, d in stream_events(api, "lyon viewer") if k == "kpis")
    assert set(lyon["lines"]) == {"line-1"}
    assert lyon["plant"] == lyon["machines"]["press-1"]


def test_the_dashboard_filters_by_site_and_line_and_a_site_token_sees_its_own(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = two_site_shop(tmp_path, None, capsys)
    engine = open_engine(shop.engine_url())
    try:
        plant = create_token(engine, "screen", Role.VIEWER)
        lyon = create_token(engine, "lyon screen", Role.VIEWER, site="lyon")
    finally:
        engine.dispose()
    def shows(selector: str, expected: str) -> None:
        """Waits for the element to show `expected`; a timeout says what it showed."""
        try:
            wait.until(lambda d: d.find_element(By.CSS_SELECTOR, selector).text == expected)
        except TimeoutException:
            found = browser.find_element(By.CSS_SELECTOR, selector).text
            pytest.fail(f"{selector} shows {found!r}, not {expected!r}")

    with serving(create_app(load_config(shop.config, {}),
                            clock=lambda: to_ns(at("13:59")))) as url:
        browser = chromium(1600, 1000)  # closed before the server, with its stream
        try:
            browser.get(f"{url}/#token={plant}")
            wait = WebDriverWait(browser, 20,
                                 ignored_exceptions=[StaleElementReferenceException])
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#machine-press-2 .oee"))
            site = Select(browser.find_element(By.ID, "site-filter"))  # drawn once
            assert [o.text for o in site.options] == ["All sites", "Lyon", "Turin"]
            heads = wait.until(lambda d: [e.text.splitlines()[0] for e in
                                          d.find_elements(By.CSS_SELECTOR, ".line-head .name")])
            assert heads == ["Lyon · line-1", "Turin · Body line"]
            maturity = (By.CSS_SELECTOR, 'nav a[href="/maturity"]')
            assert browser.find_element(*maturity).is_displayed()
            browser.save_screenshot(str(tmp_path / "sites-all.png"))
            site.select_by_visible_text("Turin")
            wait.until(lambda d: "site=turin" in d.current_url)
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#machine-press-2 .oee"))
            assert browser.find_elements(By.ID, "machine-press-1") == []
            shows("#plant .name", "Turin")
            line = Select(browser.find_element(By.ID, "line-filter"))
            assert not browser.find_element(By.ID, "line-filter").is_displayed()  # one line
            assert [o.get_attribute("textContent") for o in line.options] == [
                "All lines", "Body line"]
            browser.save_screenshot(str(tmp_path / "sites-turin.png"))
            # A Lyon token: Lyon's tile only, and no site to choose.
            browser.get(f"{url}/#token={lyon}")
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#machine-press-1 .oee"))
            assert browser.find_elements(By.ID, "machine-press-2") == []
            assert not browser.find_element(By.ID, "site-filter").is_displayed()
            shows("#plant .name", "Lyon")
            # The assessment is the whole plant's: no link to it (the API says 403).
            wait.until(lambda d: not d.find_element(*maturity).is_displayed())
            assert browser.find_element(By.CSS_SELECTOR, 'nav a[href="/alerts"]').is_displayed()
            browser.save_screenshot(str(tmp_path / "sites-lyon.png"))
            browser.get(f"{url}/?site=turin")  # another site's address: said, not retried
            shows("#status", "no site 'turin' at site 'lyon'")
        finally:
            browser.quit()
