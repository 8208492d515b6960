"""/readyz and the `ombre_connector_up` gauge in the gateway's process: one entry per
part of the data path (each source, each sink, the outbox, the shadow database), both
saying the same, and not ready while the outbox cannot write."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.tokens import Role, create_token
from bench.mosquitto import Mosquitto
from shadow.schema import database_url, open_engine, upgrade
from tests.conftest import Publisher, metric_samples, plant_config, running, wait_until

PARTS = {("broker", "source"), ("timeseries", "sink"), ("shadow", "sink"),
         ("outbox", "store"), ("shadow database", "store"),
         ("system", "clock")}


async def test_readyz_and_the_up_gauge_list_every_part_and_follow_the_outbox(
        broker: Mosquitto, publisher: Publisher, tmp_path: Path) -> None:
    config = plant_config(broker.port, tmp_path / "data")
    engine = open_engine(database_url(config.shadow.database, config.data_dir))
    upgrade(engine)
    headers = {"Authorization": f"Bearer {create_token(engine, 'viewer', Role.VIEWER)}"}
    engine.dispose()
    async with running(config) as gateway:
        with TestClient(create_app(config, counters=gateway.counters)) as client:

            async def health() -> tuple[int, dict[str, str], dict[str, str]]:
                """/readyz's status, its health per part, and the up gauge per part."""
                ready = await asyncio.to_thread(client.get, "/readyz", headers=headers)
                metrics = await asyncio.to_thread(client.get, "/metrics", headers=headers)
                parts = ready.json()["parts"]
                assert {(name, p["kind"]) for name, p in parts.items()} == PARTS
                gauge = {(labels["connector"], labels["kind"]): str(int(up)) for labels, up
                         in metric_samples(metrics.text, "ombre_connector_up")}
                assert set(gauge) == PARTS
                return (ready.status_code, {n: p["health"] for n, p in parts.items()},
                        {name: up for (name, _), up in gauge.items()})

            async def until(status: int) -> tuple[dict[str, str], dict[str, str]]:
                # Two requests per 0.2 s: under the default per-token rate limit
                # (20/s), which a faster poll exhausts after its burst of 60.
                for _ in range(150):  # 30 s or more
                    code, parts, gauge = await health()
                    if code == status:
                        return parts, gauge
                    await asyncio.sleep(0.2)
                pytest.fail(f"/readyz never answered {status}")

            every = {name for name, _ in PARTS}
            parts, gauge = await until(200)
            assert parts == dict.fromkeys(every, "up")
            assert gauge == dict.fromkeys(every, "1")

            lock = sqlite3.connect(config.data_dir / "gateway.sqlite", isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")  # the outbox cannot commit
            try:
                publisher.publish("plant/l1/m1/temp", b'{"value": 1}')
                parts, gauge = await until(503)
                assert parts == {**dict.fromkeys(every, "up"), "outbox": "down"}
                assert gauge == {**dict.fromkeys(every, "1"), "outbox": "0"}
                error = gateway.counters.connector("outbox", "store").last_error
                assert error == "OperationalError: database is locked"
            finally:
                lock.close()
            parts, gauge = await until(200)
            assert gauge == dict.fromkeys(every, "1")
            sink = gateway.counters.connector("timeseries", "sink")
            await wait_until(lambda: sink.readings == 1, what="the reading written")
