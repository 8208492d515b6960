"""The maturity page and the self-assessment in a real headless Chromium, the printable
report as HTML (in Chromium) and PDF (read back with pypdf), and the answer endpoint's
refusals of bad input."""

from __future__ import annotations

import io
import json
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from api.app import create_app
from api.maturity_report import FIGURES, figure_text
from api.report_text import NONE
from api.tokens import Role, create_token
from ombre.config import load_config
from shadow.calendar import to_ns
from shadow.schema import open_engine
from tests.api.conftest import chromium, serving
from tests.api.test_dashboard import OVERFLOW
from tests.shadow.scenarios import at
from tests.shadow.test_maturity import WATCHED, give_reasons, shop_of
from tests.shadow.test_replay import Shop

NOW = at("14:00")  # the end of the worked shift
WINDOW = ("--from", "2026-03-02T06:00:00Z", "--to", "2026-03-02T14:00:00Z")  # the shift


def token(shop: Shop, role: Role) -> str:
    engine = open_engine(shop.engine_url())
    try:
        return create_token(engine, role.name.lower(), role)
    finally:
        engine.dispose()


def cli_assessment(shop: Shop, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, out, err = shop.ombre(capsys, "assess", *WINDOW, "--json")
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.fixture
def shop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Shop:
    """The worked shift with its order, a drift watch, and reasons for 25 of its 70
    downtime minutes: resources at 4, information systems at 3."""
    found = shop_of(tmp_path, None, orders=True, capsys=capsys, **WATCHED)
    give_reasons(found, capsys, ["08:35", "11:20"])
    return found


@pytest.fixture
def url(shop: Shop) -> Iterator[str]:
    with serving(create_app(load_config(shop.config, {}), clock=lambda: to_ns(NOW))) as found:
        yield found


def screenshot(browser: webdriver.Chrome, path: Path) -> None:
    """The whole page, to be looked at (pytest --basetemp=DIR keeps it)."""
    browser.set_window_size(1400, browser.execute_script(
        "return document.documentElement.scrollHeight") + 140)
    browser.save_screenshot(str(path))


def assert_figures(browser: webdriver.Chrome, expected: dict[str, Any]) -> None:
    """The connection in figures, per scope, as the report writes them."""
    for scope in ("plant", "machine:press-1"):
        figures = {e["key"]: e for e in expected["evidence"] if e["scope"] == scope}
        row = browser.find_element(By.CSS_SELECTOR, f'#figures tr[data-scope="{scope}"]')
        cells = {td.get_attribute("data-key"): td.text
                 for td in row.find_elements(By.CSS_SELECTOR, "td[data-key]")}
        assert cells == {k: figure_text(figures[k]) for k in FIGURES if k in figures}, scope
        assert "data_completeness" in cells
    lost = next(e for e in expected["evidence"] if e["key"] == "readings_lost")
    assert browser.find_element(By.ID, "plant-figures").text.startswith(
        f"readings lost: {lost['value'] if lost['value'] is not None else NONE} · protocols: ")


def test_the_page_shows_the_assessment_and_an_admin_answers_the_self_assessment(
        shop: Shop, url: str, browser: webdriver.Chrome, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    expected = cli_assessment(shop, capsys)
    assert (expected["stage"], expected["areas"]["resources"]["stage"]) == (3, 4)
    wait = WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException])
    browser.get(f"{url}/#token={token(shop, Role.ADMIN)}")
    browser.find_element(By.CSS_SELECTOR, 'header a[href="/maturity"]').click()
    wait.until(lambda d: d.find_element(By.ID, "overall").get_attribute("data-stage"))
    browser.get(f"{url}/maturity?from={WINDOW[1]}&to={WINDOW[3]}")  # the shift, not 30 days
    wait.until(lambda d: d.find_element(By.ID, "overall").get_attribute("data-stage"))
    assert browser.find_element(By.ID, "overall").text == "Overall stage: 3 visibility"
    # uPlot draws the bars and the progress on canvases.
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-areas canvas"))
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-history canvas")
    for area in ("resources", "information_systems"):
        heading = browser.find_element(By.ID, f"area-{area}")
        assert heading.get_attribute("data-stage") == str(expected["areas"][area]["stage"])
    culture = browser.find_element(By.ID, "area-culture")
    assert culture.get_attribute("data-status") == "not assessed"
    # The evidence behind a verdict: value, threshold, source.
    row = browser.find_element(By.CSS_SELECTOR,
                               '[data-key="information_systems.downtime_reason_share"]')
    assert row.get_attribute("data-status") == "not met"
    assert f"{100 * 25 / 70:.1f} %" in row.text
    assert "80.0 %" in row.text
    assert "reason_code" in row.text
    steps = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#steps li")]
    assert steps[0].startswith("press-1 (downtime 70 min, scrap 12, 0 drift alerts): give its "
                               "stops a reason")
    assert_figures(browser, expected)
    screenshot(browser, tmp_path / "maturity-before.png")
    # The admin answers culture: training only partly, so culture stops at stage 1 and
    # the plant with it, whatever the stages above say.
    answers = {"why_explained": "yes", "trained": "partly", "shown_on_floor": "yes",
               "operators_chose": "yes", "operators_explain": "no"}
    for key, value in answers.items():
        browser.find_element(By.CSS_SELECTOR,
                             f'#question-{key} input[value="{value}"]').click()
    browser.find_element(By.ID, "save-answers").click()
    wait.until(lambda d: d.find_element(By.ID, "area-culture").get_attribute("data-stage")
               == "1")
    assert browser.find_element(By.ID, "overall").text == "Overall stage: 1 computerisation"
    assert browser.find_element(By.ID, "answers-status").text == "answers saved"
    screenshot(browser, tmp_path / "maturity-culture-1.png")
    # Training done: stages 1 to 3 hold, 4 does not.
    browser.find_element(By.CSS_SELECTOR, '#question-trained input[value="yes"]').click()
    browser.find_element(By.ID, "save-answers").click()
    wait.until(lambda d: d.find_element(By.ID, "area-culture").get_attribute("data-stage")
               == "3")
    assert browser.find_element(By.ID, "overall").text == "Overall stage: 3 visibility"
    assert browser.find_element(By.ID, "area-culture").text == \
        "Culture: 3 visibility (declared, not measured)"
    declared = browser.find_element(By.CSS_SELECTOR, '[data-key="culture.operators_explain"]')
    assert declared.get_attribute("data-status") == "not met"
    assert "declared, not measured: token:" in declared.text
    assert "admin" in browser.find_element(By.ID, "question-trained").text
    # The CLI sees the same answers, given at the API's clock (the window's end).
    after = cli_assessment(shop, capsys)
    assert after["areas"]["culture"]["stage"] == 3
    assert after["stage"] == 3
    # In French.
    browser.find_element(By.ID, "lang").click()
    wait.until(lambda d: d.find_element(By.ID, "overall").text
               == "Stade global : 3 visibilité")
    assert browser.find_element(By.ID, "area-culture").text == \
        "Culture : 3 visibilité (déclaré, non mesuré)"
    assert "Les opérateurs ont participé" in browser.find_element(
        By.ID, "question-operators_chose").text
    screenshot(browser, tmp_path / "maturity-after-fr.png")
    browser.execute_script("localStorage.removeItem('ombre-lang')")


def test_a_viewer_sees_the_page_but_may_not_answer(
        shop: Shop, url: str, browser: webdriver.Chrome) -> None:
    wait = WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException])
    browser.get(f"{url}/maturity#token={token(shop, Role.VIEWER)}")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#question-trained input[value="yes"]')
               )[0].click()
    browser.find_element(By.ID, "save-answers").click()
    wait.until(lambda d: d.find_element(By.ID, "answers-status").text
               == "answering needs an admin token")
    assert browser.find_element(By.ID, "area-culture").get_attribute("data-status") == \
        "not assessed"


def test_the_report_as_html_in_chromium_and_as_pdf(
        shop: Shop, tmp_path: Path, browser: webdriver.Chrome,
        capsys: pytest.CaptureFixture[str]) -> None:
    html = tmp_path / "report.html"
    code, _, err = shop.ombre(capsys, "assess", *WINDOW, "--report", str(html), "--lang", "fr")
    assert code == 0, err
    assert f"the report is in {html}" in err
    browser.get(html.as_uri())
    assert browser.find_element(By.ID, "overall").text == "Stade global : 3 visibilité"
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "Ressources : 4 transparence (mesuré)" in text
    assert "minutes d'arrêt avec un motif (machine ou opérateur)" in text
    assert "Non mesuré (jamais deviné)" in text
    assert "press-1 (arrêts 70 min, rebut 12, 0 alertes de dérive) : donner un motif" in text
    assert "La connexion en chiffres" in text
    assert "mesures perdues : 0 · protocoles : " in text
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg rect[data-area]")) == 2
    screenshot(browser, tmp_path / "report-fr.png")
    pdf = tmp_path / "report.pdf"
    code, _, err = shop.ombre(capsys, "assess", *WINDOW, "--report", str(pdf))
    assert code == 0, err
    reader = PdfReader(pdf)
    assert reader.pdf_header.startswith("%PDF-")
    # NFKC: the PDF's font sets "fi" as a ligature
    words = unicodedata.normalize("NFKC", " ".join(" ".join(page.extract_text().split())
                                                   for page in reader.pages))
    for expected in ("Industrie 4.0 maturity assessment", "Overall stage: 3 visibility",
                     "Stage per structural area", "downtime minutes with a reason",
                     "Next steps, most critical first", "Progress over time",
                     "The connection in figures", "data completeness"):
        assert expected in words
    assert reader.pages[0].mediabox.width == pytest.approx(595, abs=1)  # A4
    with pytest.raises(SystemExit) as exit_:
        shop.ombre(capsys, "assess", "--report", str(tmp_path / "report.docx"))
    assert exit_.value.code == 2
    assert "expected a file ending in .html, .htm, .pdf, found" in capsys.readouterr().err


def test_the_report_endpoint_gives_html_and_pdf(shop: Shop) -> None:
    headers = {"Authorization": f"Bearer {token(shop, Role.VIEWER)}"}
    app = create_app(load_config(shop.config, {}), clock=lambda: to_ns(NOW))
    with TestClient(app) as api:
        page = api.get("/api/v1/assessment/report", headers=headers, params={"lang": "fr"})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "Stade global" in page.text
        pdf = api.get("/api/v1/assessment/report", headers=headers,
                      params={"format": "pdf", "from": WINDOW[1], "to": WINDOW[3]})
        assert pdf.status_code == 200
        assert pdf.headers["content-disposition"] == \
            'attachment; filename="ombre-maturity-2026-03-02-en.pdf"'
        assert "Overall stage: 3 visibility" in " ".join(
            PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text().split())
        for params in ({"lang": "de"}, {"format": "docx"}):
            response = api.get("/api/v1/assessment/report", headers=headers, params=params)
            assert response.status_code == 422, response.text


@pytest.mark.parametrize(("body", "problem"), [
    ({"answers": {"nonsense": "yes"}}, "unknown question 'nonsense'; the questions are owner"),
    ({"answers": {"trained": "maybe"}}, "Input should be 'yes', 'partly' or 'no'"),
    ({"answers": {}}, "at least 1 item"),
    ({"answers": {"trained": "yes"}, "by": "me"}, "Extra inputs are not permitted"),
    ({}, "Field required"),
    ("not json", "JSON decode error"),
])
def test_bad_answers_are_a_422_naming_the_problem(shop: Shop, body: Any, problem: str) -> None:
    admin = {"Authorization": f"Bearer {token(shop, Role.ADMIN)}"}
    with TestClient(create_app(load_config(shop.config, {}))) as api:
        if isinstance(body, str):
            response = api.post("/api/v1/assessment/answers", content=body,
                                headers={**admin, "Content-Type": "application/json"})
        else:
            response = api.post("/api/v1/assessment/answers", json=body, headers=admin)
        assert response.status_code == 422, response.text
        assert problem in response.text
        questions = api.get("/api/v1/assessment/questions", headers=admin).json()
        assert all(q["answer"] is None for q in questions["questions"])  # nothing kept


def test_only_an_admin_answers_and_the_answer_is_audited(shop: Shop) -> None:
    with TestClient(create_app(load_config(shop.config, {}))) as api:
        body = {"answers": {"trained": "partly"}}
        assert api.post("/api/v1/assessment/answers", json=body).status_code == 401
        viewer = {"Authorization": f"Bearer {token(shop, Role.VIEWER)}"}
        operator = {"Authorization": f"Bearer {token(shop, Role.OPERATOR)}"}
        for headers in (viewer, operator):
            assert api.post("/api/v1/assessment/answers", json=body,
                            headers=headers).status_code == 403
        admin = {"Authorization": f"Bearer {token(shop, Role.ADMIN)}"}
        response = api.post("/api/v1/assessment/answers", json=body, headers=admin)
        assert response.status_code == 200, response.text
        [trained] = [q for q in response.json()["questions"] if q["key"] == "trained"]
        assert (trained["answer"], trained["answered_by"].split(":")[2]) == ("partly", "admin")
        [entry] = api.get("/api/v1/audit", headers=admin,
                          params={"action": "assessment.answer"}).json()
        assert entry["details"] == {"trained": "partly"}
        assert entry["actor"] == trained["answered_by"]


def test_without_chromium_a_pdf_is_a_clear_error_and_the_html_still_works(
        shop: Shop, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a server without Chromium
    code, _, err = shop.ombre(capsys, "assess", *WINDOW, "--report", str(tmp_path / "r.pdf"))
    assert code == 1
    assert "cannot write the report to" in err
    assert "printing a PDF needs Chromium (Debian: apt install chromium)" in err
    assert not (tmp_path / "r.pdf").exists()
    headers = {"Authorization": f"Bearer {token(shop, Role.VIEWER)}"}
    with TestClient(create_app(load_config(shop.config, {}))) as api:
        response = api.get("/api/v1/assessment/report", headers=headers,
                           params={"format": "pdf"})
        assert response.status_code == 503
        assert "the HTML report prints from any browser" in response.json()["detail"]
        assert api.get("/api/v1/assessment/report", headers=headers).status_code == 200


def test_the_maturity_page_fits_a_tablet(shop: Shop, url: str, tmp_path: Path) -> None:
    driver = chromium(800, 1280, tablet=True)
    try:
        wait = WebDriverWait(driver, 20, ignored_exceptions=[StaleElementReferenceException])
        driver.get(f"{url}/maturity?from={WINDOW[1]}&to={WINDOW[3]}"
                   f"#token={token(shop, Role.VIEWER)}")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-history canvas"))
        wait.until(lambda d: d.find_elements(By.ID, "save-answers"))
        scroll_width, width, out = driver.execute_script(OVERFLOW)
        assert (scroll_width, out) == (width, [])
        driver.save_screenshot(str(tmp_path / "maturity-tablet.png"))
    finally:
        driver.quit()
