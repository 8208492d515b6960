"""The shadow fed live: machines publishing over a real Mosquitto, through the running
gateway, into the machine model and the tables."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bench.mosquitto import Mosquitto
from ombre.config import OmbreConfig, validate_config
from shadow import tables as t
from shadow.sink import ShadowSink
from shadow.store import ShadowStore
from tests.conftest import Publisher, running, wait_until
from tests.shadow.scenarios import plant


def live_config(port: int, data_dir: Path, database: str | None,
                **machine: Any) -> OmbreConfig:
    """The plant with press-1 (`machine` overrides its settings) fed over MQTT."""
    data = plant(data_dir, database, silence_s=60, **machine)
    data["shadow"]["calendar"] = {}  # every hour is planned time
    data["sources"] = [{"type": "mqtt", "name": "broker", "port": port,
                        "client_id": "ombre-shadow-test",
                        "subscriptions": [{"topic": "plant/{machine}/{signal}"}]}]
    data["runtime"] = {"flush_interval_ms": 20, "backoff_initial_s": 0.05, "backoff_max_s": 0.2}
    return validate_config(data)


def publish(pub: Publisher, signal: str, value: object, ts_ms: int) -> None:
    pub.publish(f"plant/press-1/{signal}", json.dumps({"value": value, "ts": ts_ms}))


def rows(sink: ShadowSink, table: Any) -> list[tuple[Any, ...]]:
    assert sink.store is not None
    with sink.store.engine.connect() as c:
        return [tuple(r) for r in c.execute(select(table))]


def snapshot(sink: ShadowSink) -> dict[str, Any]:
    assert sink.store is not None
    return sink.store.snapshots().get("press-1", {})


async def test_published_states_orders_and_counts_reach_the_model_and_the_tables(
        tmp_path: Path, broker: Mosquitto, publisher: Publisher, database: str | None) -> None:
    config = live_config(broker.port, tmp_path / "data", database)
    sink = ShadowSink(config, config.registry())
    now_ms = time.time_ns() // 10**6 - 600_000
    async with running(config, [sink]):
        await wait_until(lambda: sink.model is not None, what="the shadow to connect")
        publish(publisher, "order", "4711", now_ms)
        publish(publisher, "state", "SETUP", now_ms)
        publish(publisher, "total", 100, now_ms + 1_000)
        publish(publisher, "state", "RUNNING", now_ms + 60_000)
        for i in range(1, 6):
            publish(publisher, "total", 100 + 2 * i, now_ms + 60_000 + i * 1_000)
        publish(publisher, "state", "BREAKDOWN", now_ms + 120_000)
        await wait_until(lambda: snapshot(sink).get("state", [""])[0] == "BREAKDOWN",
                         what="the breakdown in the machine snapshot")
        intervals = sorted(rows(sink, t.state_interval), key=lambda r: r[2])
        assert [(r[4], r[5], r[7]) for r in intervals] == [("SETUP", "ASUT", "4711"),
                                                           ("RUNNING", "APT", "4711")]
        assert intervals[0][3] - intervals[0][2] == 60 * 10**9
        assert sum(r[3] for r in rows(sink, t.production_count)) == 10
        state = snapshot(sink)
        assert state["job"] == "4711"
        assert state["job_counts"] == [10, 10, 0, 0]
        assert [(r[1], r[4]) for r in rows(sink, t.job)] == [("press-1", None)]


class FailingOnce:
    """Fails the first write after the model has applied it, as a lost database
    connection would: the rows are not committed, the model is ahead of them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.failed = False
        real = ShadowStore.write

        def write(store: ShadowStore, *args: Any, **kwargs: Any) -> Any:
            if not self.failed:
                self.failed = True
                raise ConnectionError("database went away")
            return real(store, *args, **kwargs)

        monkeypatch.setattr(ShadowStore, "write", write)


async def test_a_failed_write_is_retried_without_counting_twice(
        tmp_path: Path, broker: Mosquitto, publisher: Publisher,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = live_config(broker.port, tmp_path / "data", None)
    sink = ShadowSink(config, config.registry())
    failing = FailingOnce(monkeypatch)
    now_ms = time.time_ns() // 10**6 - 600_000
    async with running(config, [sink]) as gateway:
        await wait_until(lambda: sink.model is not None, what="the shadow to connect")
        publish(publisher, "state", "RUNNING", now_ms)
        for i in range(6):
            publish(publisher, "total", 10 * i, now_ms + i * 1_000)
        publish(publisher, "state", "IDLE", now_ms + 10_000)
        await wait_until(lambda: sink.store is not None and
                         snapshot(sink).get("state", [""])[0] == "IDLE",
                         what="the retried write")
        assert failing.failed
        counters = gateway.counters.connector("shadow", "sink")
        await wait_until(lambda: counters.health.value == "up",
                         what="the shadow sink to be up again")
        assert sum(r[3] for r in rows(sink, t.production_count)) == 50
        assert [(r[4], r[5]) for r in rows(sink, t.state_interval)] == [("RUNNING", "APT")]

