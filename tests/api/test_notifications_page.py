"""The notifications in the API and on the alerts page: one delivered to a real HTTP
receiver, one waiting while the receiver refuses it, in English and in French."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from api.app import create_app
from api.tokens import Role, create_token
from ombre.config import OmbreConfig, validate_config
from shadow.notifier import Notifier
from shadow.notify_rules import ConnectorView, PlantView
from shadow.schema import database_url, open_engine
from shadow.timeline import NS_PER_S
from tests.api.conftest import chromium, serving
from tests.shadow.notify_servers import Receiver, free_port
from tests.shadow.scenarios import plant

MIN = 60 * NS_PER_S


def notified(tmp_path: Path) -> OmbreConfig:
    """A plant whose broker went down (told) and came up again (refused with 503)."""
    data = plant(tmp_path / "data")
    receiver = Receiver(free_port())
    data["notifications"] = {"webhook": {"url": receiver.url}, "group_window_s": 0,
                             "min_interval_s": 0,
                             "rules": [{"type": "connector_down", "minutes": 1}]}
    config = validate_config(data)
    now = [1_780_000_000 * NS_PER_S]
    notifier = Notifier(config, clock=lambda: now[0])
    receiver.start()
    try:
        notifier.step([ConnectorView("broker", "source", now[0] - 3 * MIN, "refused")])
        receiver.fail_with = 503
        now[0] += MIN
        notifier.check(PlantView(now[0], connectors=[ConnectorView("broker", "source", None,
                                                                   None)]))
        notifier.deliver()
    finally:
        notifier.close()
        receiver.stop()
    assert (notifier.sent, notifier.retried) == (1, 1)
    return config


def test_the_alerts_page_lists_notifications_sent_and_waiting(tmp_path: Path) -> None:
    config = notified(tmp_path)
    engine = open_engine(database_url(config.shadow.database, config.data_dir))
    try:
        token = create_token(engine, "viewer", Role.VIEWER)
    finally:
        engine.dispose()
    app = create_app(config)
    with TestClient(app) as client:
        assert client.get("/api/v1/notifications").status_code == 401
        headers = {"Authorization": f"Bearer {token}"}
        listed = client.get("/api/v1/notifications", headers=headers).json()
        assert [(n["status"], n["channel"], n["attempts"]) for n in listed] == [
            ("pending", "webhook", 1), ("sent", "webhook", 1)]
        assert listed[0]["last_error"] == "webhook answered HTTP 503 Service Unavailable"
        assert listed[0]["next_ns"] is not None
        assert "source broker: up again" in listed[0]["subject"]
        bad = client.get("/api/v1/notifications", headers=headers, params={"status": "x"})
        assert bad.status_code == 422
    with serving(create_app(config)) as url:
        browser = chromium(1400, 900)
        try:
            browser.get(f"{url}/alerts#token={token}")
            rows = "#notification-table tbody tr[data-status]"
            WebDriverWait(browser, 20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR,
                                                                            rows)) == 2)
            texts = [r.text for r in browser.find_elements(By.CSS_SELECTOR, rows)]
            assert "waiting (retried)" in texts[0]
            assert "sent" in texts[1]
            browser.find_element(By.ID, "lang").click()
            WebDriverWait(browser, 20).until(lambda d: "en attente (réessayée)" in d.find_element(
                By.CSS_SELECTOR, "#notification-table").text)
            assert "Notifications envoyées" in browser.find_element(By.TAG_NAME, "main").text
            browser.save_screenshot(str(tmp_path / "alerts.png"))
        finally:
            browser.quit()
