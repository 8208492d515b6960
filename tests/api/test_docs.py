"""The API documentation behind the same auth as the API (api.docs: auth, the
default), public, or off; and its pages in a real headless Chromium, served locally,
taking the dashboard's token."""

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
from ombre.config import OmbreConfig, validate_config
from shadow.schema import database_url, open_engine
from tests.api.conftest import serving
from tests.shadow.scenarios import plant

LIST_MACHINES = "#operations-machines-list_machines_api_v1_machines_get"  # Swagger UI's block


def shop_config(data_dir: Path, docs: str | None) -> OmbreConfig:
    data = plant(data_dir, job_signal=None)
    if docs is not None:
        data["api"] = {"docs": docs}
    return validate_config(data)


def viewer_token(config: OmbreConfig) -> str:
    engine = open_engine(database_url(config.shadow.database, config.data_dir))
    try:
        return create_token(engine, "reader", Role.VIEWER)
    finally:
        engine.dispose()


@pytest.fixture
def app_client(request: pytest.FixtureRequest,
               tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    config = shop_config(tmp_path / "data", request.param)
    with TestClient(create_app(config)) as client:  # the lifespan creates the tables
        yield client, viewer_token(config)


@pytest.mark.parametrize("app_client", [None], indirect=True)
def test_by_default_the_schema_needs_a_token(app_client: tuple[TestClient, str]) -> None:
    client, token = app_client
    refused = client.get("/openapi.json")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    schema = client.get("/openapi.json", headers={"Authorization": f"Bearer {token}"})
    assert schema.status_code == 200
    assert "/api/v1/machines/{machine_id}/job" in schema.json()["paths"]
    assert "/openapi.json" not in schema.json()["paths"]
    for page in ("/docs", "/redoc"):  # shells without the API's content
        shell = client.get(page)
        assert shell.status_code == 200
        assert "/api/v1" not in shell.text
        assert "cdn" not in shell.text.lower()


@pytest.mark.parametrize("app_client", ["public"], indirect=True)
def test_public_docs_need_no_token(app_client: tuple[TestClient, str]) -> None:
    client, _ = app_client
    assert "/api/v1/machines" in client.get("/openapi.json").json()["paths"]
    assert client.get("/api/v1/machines").status_code == 401  # the API still does


@pytest.mark.parametrize("app_client", ["off"], indirect=True)
def test_docs_can_be_off(app_client: tuple[TestClient, str]) -> None:
    client, token = app_client
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code \
            == 404


def test_a_docs_setting_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"api\.docs") as raised:
        shop_config(tmp_path, "private")
    assert "'public', 'auth' or 'off'" in str(raised.value)


def test_the_docs_pages_take_the_dashboards_token(tmp_path: Path,
                                                  browser: webdriver.Chrome) -> None:
    config = shop_config(tmp_path / "data", None)
    wait = WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException])
    with serving(create_app(config)) as url:
        token = viewer_token(config)
        browser.get(f"{url}/docs")  # no token yet: the dashboard's form asks for one
        wait.until(lambda d: d.find_element(By.ID, "login").is_displayed())
        assert browser.find_elements(By.CSS_SELECTOR, ".opblock") == []
        browser.find_element(By.ID, "token").send_keys(token)
        browser.find_element(By.CSS_SELECTOR, "#login button").click()
        block = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, LIST_MACHINES))
        # Trying an endpoint sends the token: the machines come back, not a 401.
        block.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR,
                                            f"{LIST_MACHINES} .try-out__btn")).click()
        browser.find_element(By.CSS_SELECTOR, f"{LIST_MACHINES} .execute").click()
        status = wait.until(lambda d: d.find_element(
            By.CSS_SELECTOR, f"{LIST_MACHINES} .live-responses-table tbody .response-col_status"))
        assert status.text.strip() == "200"
        assert '"id": "press-1"' in browser.find_element(
            By.CSS_SELECTOR, f"{LIST_MACHINES} .live-responses-table tbody").text
        # ReDoc, on the token the browser kept.
        browser.get(f"{url}/redoc")
        wait.until(lambda d: "Start Job" in d.find_element(By.ID, "docs").text)


def test_public_docs_show_without_a_token(tmp_path: Path, browser: webdriver.Chrome) -> None:
    config = shop_config(tmp_path / "data", "public")
    wait = WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException])
    with serving(create_app(config)) as url:
        browser.get(f"{url}/redoc")
        wait.until(lambda d: "Start Job" in d.find_element(By.ID, "docs").text)
        assert browser.find_elements(By.ID, "login") == []  # no token asked for
