"""Rate limits per token and per client address: the buckets alone (pure), then over
real HTTP with clients on different loopback addresses, and the dashboard in Chromium
within half the default limits."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from api.app import create_app
from api.config import RateLimitConfig
from api.ratelimit import Buckets, Turns
from api.tokens import Role, create_token
from ombre.config import OmbreConfig, load_config
from shadow.schema import open_engine, upgrade
from tests.api.conftest import chromium, limited, serving
from tests.conftest import metric_samples
from tests.shadow.test_replay import Shop, replay_worked_example


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    now = [100.0]
    buckets = Buckets(per_s=2, burst=3, max_keys=16, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a") == pytest.approx(0.5)  # the next token in half a second
    assert buckets.take("b") == 0  # another key has its own bucket
    now[0] += 0.5
    assert buckets.take("a") == 0
    assert buckets.take("a") > 0
    now[0] += 60  # refills up to the burst, not beyond
    assert [buckets.take("a") for _ in range(4)][-1] > 0
    assert buckets.refused == 3


def test_buckets_are_bounded_dropping_the_least_recently_used() -> None:
    buckets = Buckets(per_s=1, burst=1, max_keys=16, clock=lambda: 0.0)
    assert buckets.take("flood") == 0
    for i in range(100):
        buckets.take(f"k{i}")
        assert buckets.take("flood") > 0  # used each round: never the one dropped
    assert len(buckets._levels) == 16


async def test_turns_let_a_few_requests_of_one_client_in_at_once_first_come_first_served(
        ) -> None:
    turns = Turns(limit=2)
    holding: list[str] = []
    release = asyncio.Event()

    async def request(key: str, name: str) -> None:
        await turns.take(key)
        holding.append(name)
        try:
            await release.wait()
        finally:
            holding.remove(name)
            turns.give_back(key)

    burst = [asyncio.create_task(request("flood", f"f{i}")) for i in range(5)]
    await asyncio.sleep(0.01)
    assert holding == ["f0", "f1"]  # the rest of the burst waits its turn
    calm = asyncio.create_task(request("calm", "c"))
    await asyncio.sleep(0.01)
    assert holding == ["f0", "f1", "c"]  # another client is not behind the burst
    burst[4].cancel()  # a waiting client goes away: its place is not kept
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(*burst[:4], calm)
    assert burst[4].cancelled()
    assert turns._waiting == {}  # no key kept once its requests are done


@contextmanager
def client_from(url: str, address: str, token: str | None) -> Iterator[httpx.Client]:
    """A client whose connections come from `address` (any 127.x.y.z is loopback)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, headers=headers, timeout=30,
                      transport=httpx.HTTPTransport(local_address=address)) as client:
        yield client


def test_a_flooding_client_gets_429_and_others_do_not(tmp_path: Path,
                                                      database: str | None) -> None:
    shop = Shop(tmp_path, database, [])
    # A request back every 20 s: the test's few seconds refill no bucket.
    config = limited(load_config(shop.config, {}), per_token_per_s=0.05, per_token_burst=5,
                     per_address_per_s=0.05, per_address_burst=12)
    with serving(create_app(config)) as url:
        engine = open_engine(shop.engine_url())
        try:
            flood, calm, third = (create_token(engine, n, Role.VIEWER)
                                  for n in ("flood", "calm", "third"))
        finally:
            engine.dispose()
        with client_from(url, "127.0.0.2", flood) as flooder, \
                client_from(url, "127.0.0.3", calm) as other:
            codes = [flooder.get("/api/v1/machines").status_code for _ in range(6)]
            assert codes == [200] * 5 + [429]
            refused = flooder.get("/api/v1/machines")
            assert 1 <= int(refused.headers["Retry-After"]) <= 20
            assert refused.json()["detail"].startswith("too many requests from this token")
            assert flooder.get("/healthz").status_code == 200  # never limited
            assert other.get("/api/v1/machines").status_code == 200
            # The same address with another token: the token's bucket is full, the
            # address's is nearly spent (7 requests so far), then spent.
            with client_from(url, "127.0.0.2", third) as same_address:
                codes = [same_address.get("/api/v1/machines").status_code for _ in range(6)]
                assert codes == [200] * 5 + [429]
                assert same_address.get("/api/v1/machines").json()["detail"].startswith(
                    "too many requests from this address")
            metrics = other.get("/metrics").text
            assert [(labels["by"], n) for labels, n in
                    metric_samples(metrics, "ombre_http_rate_limited_total")] == [
                ("address", 2), ("token", 2), ("connection", 0)]


def shop_with_token(tmp_path: Path, role: Role, **limits: float) -> tuple[OmbreConfig, str]:
    """An empty shop's config with api.rate_limit set to `limits`, and a token."""
    shop = Shop(tmp_path, None, [])
    engine = open_engine(shop.engine_url())
    try:
        upgrade(engine)
        token = create_token(engine, role.name.lower(), role)
    finally:
        engine.dispose()
    return limited(load_config(shop.config, {}), **limits), token


def answer(sock: socket.socket) -> tuple[str, dict[str, str], str]:
    """The status line, header fields (names in lower case) and body of one answer."""
    got = b""
    while b"\r\n\r\n" not in got:
        got += sock.recv(4096)
    head, body = got.split(b"\r\n\r\n", 1)
    status, *lines = head.decode().split("\r\n")
    fields = dict(line.lower().split(": ", 1) for line in lines)
    while len(body) < int(fields["content-length"]):
        body += sock.recv(4096)
    return status, fields, body.decode()


def test_a_refusal_is_sent_before_the_body_is_read(tmp_path: Path) -> None:
    """Over the limit, a request is answered 429 from its head alone: the client gets
    the refusal while most of the body it announced is still unsent."""
    config, token = shop_with_token(tmp_path, Role.OPERATOR, per_token_per_s=0.05,
                                    per_token_burst=1)
    with serving(create_app(config)) as url, client_from(url, "127.0.0.2", token) as client:
        assert client.get("/api/v1/machines").status_code == 200  # the burst, spent
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10,
                                      source_address=("127.0.0.2", 0)) as sock:
            sock.sendall(f"POST /api/v1/orders HTTP/1.1\r\nHost: {host}\r\n"
                         f"Authorization: Bearer {token}\r\n"
                         "Content-Type: application/json\r\nContent-Length: 500000\r\n\r\n"
                         '{"orders": ['.encode())
            status, fields, body = answer(sock)
    assert status == "HTTP/1.1 429 Too Many Requests"
    assert 1 <= int(fields["retry-after"]) <= 20
    assert json.loads(body) == {"detail": "too many requests from this token; retry in "
                                          f"{fields['retry-after']} s (api.rate_limit)"}


def test_an_address_holds_at_most_its_connections_but_a_proxy_is_not_capped(
        tmp_path: Path) -> None:
    config, token = shop_with_token(tmp_path, Role.VIEWER, per_address_connections=2)
    app = create_app(config)
    with serving(app) as url:
        host, port = url.removeprefix("http://").split(":")
        request = (f"GET /api/v1/machines HTTP/1.1\r\nHost: {host}\r\n"
                   f"Authorization: Bearer {token}\r\n\r\n").encode()

        def connect(address: str) -> socket.socket:
            return socket.create_connection((host, int(port)), timeout=10,
                                            source_address=(address, 0))

        with connect("127.0.0.2") as first, connect("127.0.0.2") as second:
            for sock in (first, second):  # answered: the server has counted them
                sock.sendall(request)
                assert answer(sock)[0] == "HTTP/1.1 200 OK"
            with connect("127.0.0.2") as third:
                status, fields, body = answer(third)  # before it sent a byte
                assert status == "HTTP/1.1 429 Too Many Requests"
                assert (fields["retry-after"], fields["connection"]) == ("1", "close")
                assert json.loads(body)["detail"].startswith("too many connections")
                assert third.recv(1) == b""  # and closed
            proxied = [connect("127.0.0.1") for _ in range(3)]  # a trusted proxy's
            for sock in proxied:
                sock.sendall(request)
                assert answer(sock)[0] == "HTTP/1.1 200 OK"
                sock.close()
        # Closed, they no longer count (once the server has seen them go).
        deadline = time.monotonic() + 10
        while True:
            with connect("127.0.0.2") as again:
                again.sendall(request)
                if answer(again)[0] == "HTTP/1.1 200 OK":
                    break
            assert time.monotonic() < deadline, "closed connections still counted"
        assert app.state.rate_limits.connections.refused >= 1


def test_a_running_stream_holds_no_turn(tmp_path: Path) -> None:
    """One request in flight per client: the live stream, once it has begun, does not
    keep the same token's next requests waiting."""
    config, token = shop_with_token(tmp_path, Role.VIEWER, per_client_in_flight=1)
    with serving(create_app(config)) as url, client_from(url, "127.0.0.2", token) as client, \
            client.stream("GET", "/api/v1/stream") as stream:
        assert stream.status_code == 200
        assert client.get("/api/v1/machines", timeout=5).status_code == 200


def test_the_dashboard_stays_within_half_the_default_limits(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every page of the dashboard loaded in turn with one token from one address, the
    overview's stream left running: not one request refused with half the default
    rates and bursts."""
    shop = Shop(tmp_path, None, [])
    replay_worked_example(shop, capsys)
    default = RateLimitConfig()
    config = limited(load_config(shop.config, {}),
                     per_token_per_s=default.per_token_per_s / 2,
                     per_token_burst=default.per_token_burst // 2,
                     per_address_per_s=default.per_address_per_s / 2,
                     per_address_burst=default.per_address_burst // 2,
                     per_client_in_flight=default.per_client_in_flight // 2)
    engine = open_engine(shop.engine_url())
    try:
        token = create_token(engine, "screen", Role.OPERATOR)
    finally:
        engine.dispose()
    app = create_app(config)
    browser = chromium(1600, 1000)
    with serving(app) as url:
        try:
            browser.get(f"{url}/#token={token}")
            for page in ("/machine?id=press-1", "/line", "/alerts", "/orders", "/"):
                time.sleep(3)  # the page's requests, and the stream's first rounds
                browser.get(f"{url}{page}")
            WebDriverWait(browser, 20).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, "#machine-press-1"))
            time.sleep(3)
        finally:
            browser.quit()
    limits = app.state.rate_limits
    assert (limits.by_token.refused, limits.by_address.refused) == (0, 0)
    answered = sum(s.value for family in app.state.request_stats.collect()
                   for s in family.samples
                   if s.name.endswith("_count") and s.labels["status"] == "200")
    assert answered >= 15  # the pages did ask: files, API calls, streams
