"""Hostile and broken input to the API, over real HTTP (uvicorn on a free port): the
body cap holds for chunked uploads, bad bodies get a 4xx that says what is wrong, and
no body ever reaches the log."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from fastapi import Request

from api.app import create_app
from api.tokens import Role, create_token
from ombre.config import load_config
from shadow.schema import open_engine
from tests.api.conftest import serving
from tests.shadow.test_replay import Shop

MARKER = "BODY-MARKER-7f3a"  # in every body sent here; it must never be logged


class Server:
    """The app of an empty shop served by uvicorn, with an admin and a viewer token."""

    def __init__(self, url: str, shop: Shop) -> None:
        self.url, self.shop = url, shop
        engine = open_engine(shop.engine_url())
        try:
            self.admin = create_token(engine, "admin", Role.ADMIN)
            self.viewer = create_token(engine, "viewer", Role.VIEWER)
        finally:
            engine.dispose()
        self.client = httpx.Client(base_url=url, timeout=30)

    def post(self, path: str, token: str, *, headers: dict[str, str] | None = None,
             content: bytes | str | Iterator[bytes] | None = None,
             json: object = None) -> httpx.Response:
        return self.client.post(f"/api/v1{path}", content=content, json=json,
                                headers={"Authorization": f"Bearer {token}", **(headers or {})})

    def orders(self) -> list[dict[str, object]]:
        found = self.client.get("/api/v1/orders",
                                headers={"Authorization": f"Bearer {self.viewer}"})
        assert found.status_code == 200, found.text
        orders: list[dict[str, object]] = found.json()
        return orders


async def fails_quoting_its_body(request: Request) -> None:
    """A route with a bug: its exception's message quotes the body, as a validation
    error or a SQL error's parameters would."""
    raise ValueError(f"cannot use {(await request.body()).decode()!r}")


@pytest.fixture
def server(tmp_path: Path, database: str | None) -> Iterator[Server]:
    shop = Shop(tmp_path, database, [])
    app = create_app(load_config(shop.config, {}))
    app.add_api_route("/api/v1/broken", fails_quoting_its_body, methods=["POST"])
    with serving(app) as url:
        served = Server(url, shop)
        yield served
        served.client.close()


def csv_rows(rows: int) -> Iterator[bytes]:
    yield b"order_no,planned_qty,pru_s,material\n"
    for i in range(rows):
        yield f"{i},10,30,{MARKER}\n".encode()


def test_a_chunked_upload_over_the_cap_is_refused_and_imports_nothing(
        server: Server, capfd: pytest.CaptureFixture[str]) -> None:
    """No Content-Length: the cap is on the bytes received (50,000 rows, about 1.6 MB,
    against the default 1 MiB)."""
    response = server.post("/orders/import", server.admin, content=csv_rows(50_000),
                           headers={"Content-Type": "text/csv"})
    assert response.status_code == 413
    assert "api.max_body_bytes" in response.json()["detail"]
    assert server.orders() == []
    small = server.post("/orders/import", server.admin, content=csv_rows(3),
                        headers={"Content-Type": "text/csv"})
    assert small.status_code == 200, small.text
    assert small.json()["imported"] == 3
    assert MARKER not in "".join(capfd.readouterr())


def test_bad_bodies_get_a_4xx_naming_the_problem_and_are_never_logged(
        server: Server, capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    good = f"order_no,planned_qty,pru_s,material\n1,10,30,{MARKER}\n".encode()
    latin1 = server.post("/orders/import", server.admin, headers={"Content-Type": "text/csv"},
                         content=good + f"2,10,30,{MARKER}-\xe9\n".encode("latin-1"))
    assert latin1.status_code == 400
    assert latin1.json()["detail"].startswith("upload:3: not UTF-8 (byte 0xe9")
    gzipped = server.post("/orders/import", server.admin, content=gzip.compress(good),
                          headers={"Content-Type": "text/csv", "Content-Encoding": "gzip"})
    assert gzipped.status_code == 415
    assert "'gzip'" in gzipped.json()["detail"]
    for constant in ("NaN", "Infinity", "-Infinity", "1e999"):
        body = (f'[{{"order_no": "1", "planned_qty": 10, "pru_s": 30, "material": '
                f'"{MARKER}"}}, {{"order_no": "2", "planned_qty": 10, "pru_s": {constant}}}]')
        nan = server.post("/orders", server.admin, content=body,
                          headers={"Content-Type": "application/json"})
        assert nan.status_code == 422, constant
        assert nan.json()["detail"][0]["loc"] == ["body", 1, "pru_s"]
    assert server.orders() == []
    broken = server.post("/broken", server.admin, content=f"{MARKER} " * 50_000)
    assert broken.status_code == 500
    assert MARKER not in broken.text
    big_and_bad = server.post("/orders/import", server.admin,
                              headers={"Content-Type": "text/csv"},
                              content=(good * 20_000)[:900_000] + b"\xff\n")
    assert big_and_bad.status_code == 400
    logged = "".join(capfd.readouterr()) + caplog.text  # uvicorn's output, and Ombre's
    assert MARKER not in logged
    assert "POST /api/v1/broken failed: ValueError (message not logged)" in caplog.text
    assert len(logged) < 5_000  # a line per request and a traceback, never a body


def test_the_bearer_scheme_is_case_insensitive(server: Server) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        response = server.client.get("/api/v1/orders",
                                     headers={"Authorization": f"{scheme} {server.viewer}"})
        assert response.status_code == 200, scheme
    basic = server.client.get("/api/v1/orders",
                              headers={"Authorization": f"Basic {server.viewer}"})
    assert basic.status_code == 401


def test_acknowledging_or_closing_an_alert_that_does_not_exist_is_404(server: Server) -> None:
    for path, body in (("/alerts/12345/ack", None), ("/alerts/12345/close", {"cause": "other"})):
        response = server.post(path, server.admin, json=body)
        assert response.status_code == 404, path
        assert response.json()["detail"] == "no alert 12345"
