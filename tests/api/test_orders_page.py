"""The orders page in a real headless Chromium, over a running gateway (a real
Mosquitto, the shadow sink) and the API served by uvicorn: an admin imports a CSV, an
operator starts an order's job on a machine without a job signal and completes it, and
the page follows the shadow live."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from api.app import create_app
from api.tokens import Role
from bench.mosquitto import Mosquitto
from ombre.config import OmbreConfig
from shadow.sink import ShadowSink
from tests.api.conftest import serving
from tests.api.test_jobs import config_without_job_signal, tokens
from tests.conftest import Publisher, running, wait_until
from tests.shadow.test_live import publish


class Shop:
    """A gateway with the shadow sink running in a thread of its own (the browser
    blocks this one), and the API beside it."""

    def __init__(self, config: OmbreConfig, url: str, tokens: dict[Role, str]) -> None:
        self.config, self.url, self.tokens = config, url, tokens


@pytest.fixture
def shop(tmp_path: Path, broker: Mosquitto) -> Iterator[Shop]:
    config = config_without_job_signal(broker.port, tmp_path / "data", None)
    sink = ShadowSink(config, config.registry())
    made = tokens(config)
    started, stop = threading.Event(), threading.Event()

    async def gateway() -> None:
        async with running(config, [sink]):
            await wait_until(lambda: sink.model is not None, what="the shadow to connect")
            started.set()
            await asyncio.to_thread(stop.wait)

    thread = threading.Thread(target=asyncio.run, args=(gateway(),), name="test:gateway")
    thread.start()
    try:
        assert started.wait(20), "the gateway did not start"
        with serving(create_app(config)) as url:
            yield Shop(config, url, made)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


def row(browser: webdriver.Chrome, job: str) -> WebElement:
    return browser.find_element(By.CSS_SELECTOR, f'#order-table tr[data-job="{job}"]')


def open_as(browser: webdriver.Chrome, shop: Shop, role: Role) -> None:
    browser.get(f"{shop.url}/healthz")  # a new page of the origin, with its storage
    browser.execute_script("localStorage.clear()")
    browser.get(f"{shop.url}/orders#token={shop.tokens[role]}")


def test_orders_are_imported_started_and_completed_on_the_page(
        shop: Shop, publisher: Publisher, browser: webdriver.Chrome, tmp_path: Path) -> None:
    wait = WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException])
    now_ms = time.time_ns() // 10**6 - 600_000
    publish(publisher, "state", "RUNNING", now_ms)
    publish(publisher, "total", 100, now_ms + 1_000)
    csv_file = tmp_path / "orders.csv"
    csv_file.write_text("order_no,operation,material,planned_qty,pru_s,machine\n"
                        "4711,10,BRKT-20,20,30,press-1\n4712,10,BRKT-20,many,30,press-1\n")
    # An operator may not import; an admin may, and a bad row is reported by line.
    open_as(browser, shop, Role.OPERATOR)
    wait.until(lambda d: d.find_element(By.ID, "page").is_displayed())
    browser.find_element(By.ID, "csv").send_keys(str(csv_file))
    wait.until(lambda d: "admin" in d.find_element(By.ID, "orders-error").text)
    open_as(browser, shop, Role.ADMIN)
    wait.until(lambda d: d.find_element(By.ID, "page").is_displayed())
    browser.find_element(By.ID, "csv").send_keys(str(csv_file))
    wait.until(lambda d: row(d, "4711/10").get_attribute("data-status") == "planned")
    assert browser.find_element(By.ID, "import-result").text == "1 orders imported"
    assert "upload:3: planned_qty" in browser.find_element(By.ID, "orders-error").text
    assert "0 / 20" in row(browser, "4711/10").text
    # An operator starts it on press-1 (its planned machine, selected already).
    open_as(browser, shop, Role.OPERATOR)
    start = wait.until(lambda d: row(d, "4711/10").find_element(By.CSS_SELECTOR, "button.start"))
    assert Select(row(browser, "4711/10").find_element(By.TAG_NAME, "select")) \
        .first_selected_option.get_attribute("value") == "press-1"
    start.click()
    wait.until(lambda d: row(d, "4711/10").get_attribute("data-status") == "running")
    wait.until(lambda d: row(d, "4711/10").find_element(By.CLASS_NAME, "machine").text
               == "press-1")
    # Parts counted now are the order's: the progress follows live.
    for i in range(1, 6):
        publish(publisher, "total", 100 + 2 * i, now_ms + 1_000 + i * 1_000)
    wait.until(lambda d: "10 / 20" in row(d, "4711/10").text)
    wait.until(lambda d: row(d, "4711/10").find_element(By.CSS_SELECTOR, ".progress .fill")
               .get_attribute("style") == "width: 50%;")
    row(browser, "4711/10").find_element(By.CSS_SELECTOR, "button.complete").click()
    wait.until(lambda d: row(d, "4711/10").get_attribute("data-status") == "completed")
    wait.until(lambda d: row(d, "4711/10").find_element(By.CLASS_NAME, "machine").text == "")
    # How it ended, on its status.
    assert row(browser, "4711/10").find_element(By.CLASS_NAME, "status") \
        .get_attribute("title") == "press-1: completed by hand"
    browser.find_element(By.ID, "lang").click()  # French labels
    wait.until(lambda d: row(d, "4711/10").find_element(By.CLASS_NAME, "status").text
               == "terminé")
