"""What the dashboard tests share: the app served by uvicorn on a free port, and the
browser, the Debian chromium, headless, through its chromedriver (a missing one fails
the test)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from fastapi import FastAPI
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from api.config import RateLimitConfig
from api.connections import http_protocol
from bench.mosquitto import free_port
from ombre.config import OmbreConfig
from tests.conftest import require_binary


def limited(config: OmbreConfig, **limits: float) -> OmbreConfig:
    """`config` with api.rate_limit set to `limits`."""
    api = config.api.model_copy(update={"rate_limit": RateLimitConfig(**limits)})  # type: ignore[arg-type]
    return config.model_copy(update={"api": api})


@contextmanager
def serving(app: FastAPI, port: int | None = None) -> Iterator[str]:
    """`app` served by uvicorn in a thread, on `port` or a free one; yields its base
    URL. The server stops when the block ends."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", timeout_graceful_shutdown=2,
                                           http=http_protocol(app)))
    thread = threading.Thread(target=server.run, name="test:uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def chromium(width: int, height: int, *, tablet: bool = False) -> webdriver.Chrome:
    """Headless Chromium with a window of width x height CSS pixels; as a tablet, with
    Chromium's mobile emulation (touch, a device pixel ratio of 2, a tablet's user
    agent) at that size."""
    options = webdriver.ChromeOptions()
    options.binary_location = require_binary("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    if tablet:
        options.add_experimental_option("mobileEmulation", {
            "deviceMetrics": {"width": width, "height": height, "pixelRatio": 2.0,
                              "touch": True},
            "userAgent": "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 "
                         "(KHTML, like Gecko) Chrome/130.0 Safari/537.36"})
    return webdriver.Chrome(service=Service(require_binary("chromedriver")), options=options)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    driver = chromium(1600, 1000)
    try:
        yield driver
    finally:
        driver.quit()
