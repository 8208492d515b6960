"""The shift reports through the API (listed, served, refused when the name is not a
report's) and on the dashboard's /reports page in a real headless Chromium; an
operator's note on a line's shift through the API and the page, and the refusals of bad
notes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from api.app import create_app
from api.tokens import Role, create_token
from ombre.config import load_config
from shadow import audit
from shadow.calendar import to_ns
from shadow.schema import open_engine
from tests.api.conftest import chromium, serving
from tests.ombre.test_shift_report import LIVE, NOTE, shift_report_shop
from tests.shadow.scenarios import at
from tests.shadow.test_replay import Shop

NOW = at("12:00")  # within the worked example's early shift


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    return shift_report_shop(tmp_path_factory.mktemp("reports-page"))


def bearer(shop: Shop, role: Role) -> dict[str, str]:
    engine = open_engine(shop.engine_url())
    try:
        return {"Authorization": f"Bearer {create_token(engine, role.name.lower(), role)}"}
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def api(shop: Shop) -> Iterator[TestClient]:
    with TestClient(create_app(load_config(shop.config, {}),
                               clock=lambda: to_ns(NOW))) as client:
        yield client


def test_the_kept_reports_are_listed_and_served(shop: Shop, api: TestClient) -> None:
    viewer = bearer(shop, Role.VIEWER)
    assert api.get("/api/v1/reports").status_code == 401
    [found] = api.get("/api/v1/reports", headers=viewer).json()
    assert {k: found[k] for k in ("name", "line", "shift", "day", "lang", "complete",
                                  "oee_target", "html", "pdf")} == {
        "name": LIVE, "line": "line-1", "shift": "early", "day": "2026-03-02", "lang": "fr",
        "complete": True, "oee_target": 0.75, "html": f"/api/v1/reports/{LIVE}.html",
        "pdf": f"/api/v1/reports/{LIVE}.pdf"}
    assert api.get("/api/v1/reports", headers=viewer, params={"line": "line-2"}).json() == []
    page = api.get(found["html"], headers=viewer)
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "<h1>Rapport de poste · line-1</h1>" in page.text
    printed = api.get(found["pdf"], headers=viewer)
    assert printed.headers["content-type"] == "application/pdf"
    assert printed.content.startswith(b"%PDF")
    for name in (f"{LIVE}.json", "nope.html", "..%2Fplant.yaml", "%2E%2E.html"):
        response = api.get(f"/api/v1/reports/{name}", headers=viewer)
        assert response.status_code == 404, name


def test_an_operator_adds_a_note_on_the_running_shift(shop: Shop, api: TestClient) -> None:
    operator, viewer = bearer(shop, Role.OPERATOR), bearer(shop, Role.VIEWER)
    body = {"text": "Bac de rebut vidé"}
    assert api.post("/api/v1/lines/line-1/notes", json=body, headers=viewer).status_code == 403
    response = api.post("/api/v1/lines/line-1/notes", json=body, headers=operator)
    assert response.status_code == 201, response.text
    note = response.json()
    assert (note["line"], note["shift"], note["shift_start_ns"], note["author"],
            note["written_ns"]) == ("line-1", "early", to_ns(at("06:00")), "operator",
                                    to_ns(NOW))
    listed = api.get("/api/v1/lines/line-1/notes", headers=viewer).json()
    assert [n["text"] for n in listed] == [NOTE, "Bac de rebut vidé"]
    engine = open_engine(shop.engine_url())
    try:
        found = audit.entries(engine, since_ns=0, action="shift.note", limit=10)
    finally:
        engine.dispose()
    [entry] = [e for e in found if e.actor.startswith("token:")]
    assert (entry.target, entry.details) == ("line line-1", {"shift": "2026-03-02 early",
                                                             "note": note["id"]})


@pytest.mark.parametrize("case", [
    ("line-9", {"text": "x"}, 404, "no line 'line-9' in the config"),
    ("line-1", {"text": "x", "at": "2026-03-01T10:00:00Z"}, 422,
     "no shift of the calendar runs at 2026-03-01T10:00:00+00:00"),
    ("line-1", {"text": ""}, 422, "at least 1 character"),
    ("line-1", {"text": "a\u0000b"}, 422, "string should match pattern"),
    ("line-1", {"text": "x" * 2001}, 422, "at most 2000 characters"),
    ("line-1", {"text": "x", "at": "3000-01-01T00:00:00Z"}, 400, "`at` must be from"),
])
def test_a_bad_note_is_refused_naming_the_problem(
        shop: Shop, api: TestClient, case: tuple[str, dict[str, str], int, str]) -> None:
    line, body, status, detail = case
    response = api.post(f"/api/v1/lines/{line}/notes", json=body,
                        headers=bearer(shop, Role.OPERATOR))
    assert response.status_code == status, response.text
    assert detail.lower() in response.text.lower()


def test_the_reports_page_lists_the_reports_and_takes_a_note(
        shop: Shop, tmp_path: Path) -> None:
    app = create_app(load_config(shop.config, {}), clock=lambda: to_ns(NOW))
    token = bearer(shop, Role.OPERATOR)["Authorization"].removeprefix("Bearer ")
    browser: webdriver.Chrome = chromium(1300, 800)
    try:
        with serving(app) as url:
            # A navigation may replace an element between finding it and reading it.
            wait = WebDriverWait(browser, 20,
                                 ignored_exceptions=(StaleElementReferenceException,))
            browser.get(f"{url}/#token={token}")
            browser.execute_script("localStorage.setItem('ombre-lang', 'en')")
            browser.get(url)
            link = browser.find_element(By.CSS_SELECTOR, 'header a[href="/reports"]')
            assert link.text == "Shift reports"
            # Opened afresh rather than by the link: the overview's live stream would hold
            # one of the token's requests in flight until the server sees it gone.
            browser.get(f"{url}/reports")
            row = wait.until(lambda d: d.find_element(By.CSS_SELECTOR,
                                                      f'tr[data-name="{LIVE}"]'))
            cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
            assert cells == ["2026-03-02", "early", "line-1", "76.7 %", "75.0 %", "FR",
                             "HTML PDF"]
            assert browser.find_element(By.TAG_NAME, "h1").text == "Shift reports"
            # The HTML opens, fetched with the token; Back returns to the list.
            row.find_element(By.CSS_SELECTOR, "a.html").click()
            # Read in one script: an element found in the page being left may be gone
            # before its text is read (Chrome then raises more than a stale reference).
            wait.until(lambda d: d.execute_script(
                "return document.querySelector('h1')?.textContent") ==
                       "Rapport de poste · line-1")
            assert browser.current_url.startswith("blob:")
            browser.save_screenshot(str(tmp_path / "shift-report.png"))
            browser.back()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-name="{LIVE}"]'))
            # In French, and a note on the running shift.
            browser.find_element(By.ID, "lang").click()
            assert browser.find_element(By.TAG_NAME, "h1").text == "Rapports de poste"
            browser.find_element(By.ID, "note-text").send_keys("Changement de bobine")
            browser.find_element(By.CSS_SELECTOR, '#note button[type="submit"]').click()
            wait.until(lambda d: d.find_element(By.ID, "note-result").text == "note ajoutée")
            browser.save_screenshot(str(tmp_path / "reports-page.png"))
    finally:
        browser.quit()
    with TestClient(app) as api:
        texts = [n["text"] for n in api.get("/api/v1/lines/line-1/notes",
                                             headers=bearer(shop, Role.VIEWER)).json()]
    assert texts[-1] == "Changement de bobine"
