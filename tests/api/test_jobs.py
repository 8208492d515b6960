"""Jobs started and completed through the API, end to end: the API records a job
command, the shadow sink of a running gateway (fed over a real Mosquitto) applies it,
and the job, its counts and its order's progress come back through the API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.tokens import Role, create_token
from bench.mosquitto import Mosquitto
from ombre.config import OmbreConfig
from shadow import tables as t
from shadow.schema import database_url, open_engine, upgrade
from shadow.sink import ShadowSink
from tests.conftest import Publisher, running, wait_until
from tests.shadow.test_live import live_config, publish

ORDER = {"order_no": "4711", "operation": "10", "planned_qty": 20, "pru_s": 30,
         "machine": "press-1"}


def config_without_job_signal(port: int, data_dir: Path, database: str | None) -> OmbreConfig:
    return live_config(port, data_dir, database, job_signal=None)


class Client:
    def __init__(self, client: TestClient, tokens: dict[Role, str]) -> None:
        self.client, self.tokens = client, tokens

    def call(self, method: str, path: str, role: Role, body: object = None) -> Any:
        return self.client.request(method, f"/api/v1{path}", json=body,
                                   headers={"Authorization": f"Bearer {self.tokens[role]}"})

    def get(self, path: str) -> Any:
        response = self.call("GET", path, Role.VIEWER)
        assert response.status_code == 200, response.text
        return response.json()

    def order(self) -> dict[str, Any]:
        [found] = [o for o in self.get("/orders") if o["job_key"] == "4711/10"]
        return found  # type: ignore[no-any-return]


def tokens(config: OmbreConfig) -> dict[Role, str]:
    engine = open_engine(database_url(config.shadow.database, config.data_dir))
    try:
        upgrade(engine)
        return {role: create_token(engine, role.name.lower(), role) for role in Role}
    finally:
        engine.dispose()


async def test_a_job_started_and_completed_through_the_api_is_applied_by_the_shadow(
        tmp_path: Path, broker: Mosquitto, publisher: Publisher, database: str | None) -> None:
    config = config_without_job_signal(broker.port, tmp_path / "data", database)
    sink = ShadowSink(config, config.registry())
    now_ms = time.time_ns() // 10**6 - 600_000  # the data is ten minutes behind the clock
    with TestClient(create_app(config)) as http:
        api = Client(http, tokens(config))
        assert api.call("POST", "/orders", Role.ADMIN, [ORDER]).status_code == 200
        async with running(config, [sink]):
            await wait_until(lambda: sink.model is not None, what="the shadow to connect")
            publish(publisher, "state", "RUNNING", now_ms)
            publish(publisher, "total", 100, now_ms + 1_000)
            await wait_until(lambda: api.get("/machines/press-1")["last_seen_ns"] is not None,
                             what="the first readings")
            # A viewer may not start a job; an operator may, of an order that exists.
            start = {"order": "4711", "operation": "10"}
            assert api.call("POST", "/machines/press-1/job", Role.VIEWER, start) \
                .status_code == 403
            unknown = api.call("POST", "/machines/press-1/job", Role.OPERATOR,
                               {"order": "4712"})
            assert unknown.status_code == 404
            assert "4712" in unknown.json()["detail"]
            accepted = api.call("POST", "/machines/press-1/job", Role.OPERATOR, start)
            assert accepted.status_code == 202, accepted.text
            command = accepted.json()
            assert (command["action"], command["job"], command["applied_ns"]) \
                == ("start", "4711/10", None)
            await wait_until(lambda: api.get(f"/job-commands/{command['id']}")["applied_ns"]
                             is not None, what="the shadow to apply the job start")
            applied = api.get(f"/job-commands/{command['id']}")
            assert applied["result"] == "started 4711/10"
            # The job starts at the data time the shadow had reached, not the wall clock.
            assert applied["applied_ns"] == (now_ms + 1_000) * 10**6
            assert api.get("/machines/press-1")["job"] == "4711/10"
            assert api.order()["status"] == "running"
            # Parts counted from now on are the job's, and its order's.
            for i in range(1, 6):
                publish(publisher, "total", 100 + 2 * i, now_ms + 1_000 + i * 1_000)
            await wait_until(lambda: api.order()["produced"] == 10,
                             what="the job's parts in its order")
            assert api.get("/machines/press-1")["counts"]["produced"] == 10
            done = api.call("POST", "/machines/press-1/job/complete", Role.OPERATOR)
            assert done.status_code == 202, done.text
            await wait_until(lambda: api.get(f"/job-commands/{done.json()['id']}")["applied_ns"]
                             is not None, what="the shadow to apply the completion")
            assert api.get(f"/job-commands/{done.json()['id']}")["result"] \
                == "completed 4711/10"
            assert api.get("/machines/press-1")["job"] is None
            assert api.order()["status"] == "completed"
            nothing = api.call("POST", "/machines/press-1/job/complete", Role.OPERATOR)
            assert nothing.status_code == 409
        assert sink.store is None  # closed with the gateway
        engine = open_engine(sink.url)
        try:
            with engine.connect() as c:
                jobs = [tuple(r) for r in c.execute(
                    select(t.job.c.job_key, t.job.c.start_ns, t.job.c.end_ns, t.job.c.status))]
        finally:
            engine.dispose()
        assert jobs == [("4711/10", (now_ms + 1_000) * 10**6, (now_ms + 6_000) * 10**6,
                         "Completed")]


async def test_an_order_is_completed_through_the_api(
        tmp_path: Path, broker: Mosquitto, publisher: Publisher, database: str | None) -> None:
    """`POST /orders/complete`: an order no machine runs completes at once; one a
    machine runs ends through a job command the shadow applies, with how it ended."""
    config = config_without_job_signal(broker.port, tmp_path / "data", database)
    sink = ShadowSink(config, config.registry())
    now_ms = time.time_ns() // 10**6 - 600_000
    with TestClient(create_app(config)) as http:
        api = Client(http, tokens(config))
        other = {**ORDER, "order_no": "4712"}
        assert api.call("POST", "/orders", Role.ADMIN, [ORDER, other]).status_code == 200
        later = {"order": "4712", "operation": "10"}
        assert api.call("POST", "/orders/complete", Role.VIEWER, later).status_code == 403
        done = api.call("POST", "/orders/complete", Role.OPERATOR, later)
        assert done.json() == {"commands": [], "status": "completed", "changed": True}
        assert api.call("POST", "/orders/complete", Role.OPERATOR, later).json() == \
            {"commands": [], "status": "completed", "changed": False}
        unknown = api.call("POST", "/orders/complete", Role.OPERATOR, {"order": "9"})
        assert (unknown.status_code, unknown.json()["detail"]) == \
            (404, "no order with job key '9'")
        async with running(config, [sink]):
            await wait_until(lambda: sink.model is not None, what="the shadow to connect")
            publish(publisher, "state", "RUNNING", now_ms)
            start = {"order": "4711", "operation": "10"}
            command = api.call("POST", "/machines/press-1/job", Role.OPERATOR, start).json()
            await wait_until(lambda: api.get(f"/job-commands/{command['id']}")["applied_ns"]
                             is not None, what="the shadow to start the job")
            done = api.call("POST", "/orders/complete", Role.OPERATOR, start)
            [completing] = done.json()["commands"]
            assert done.json()["status"] == "running"
            await wait_until(lambda: api.order()["status"] == "completed",
                             what="the shadow to complete the order")
            assert api.get(f"/job-commands/{completing}")["result"] == "completed 4711/10"
            order = api.order()
            assert (order["end_ns"], order["ended_by"], order["end_reason"]) == (
                now_ms * 10**6, "command", "press-1: completed by hand")
