"""The outbox filled past its byte cap during a long outage of the shadow's PostgreSQL
(a server of the test's own, stopped: connections refused) while the time-series sink
keeps writing: exactly the counted oldest telemetry is dropped for the shadow, every
event is kept, the overflow is raised, and the shadow gets all that was kept once its
database is back, and records how many were dropped (the assessment's readings_lost)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest

from bench.mosquitto import Mosquitto
from connectors.sqlite_ts import open_store
from gateway.counters import Health
from gateway.outbox import EVENTS, GATEWAY_MACHINE, OVERFLOW_EVENT, TELEMETRY, decode_batch
from ombre.config import OmbreConfig, validate_config
from shadow.maturity import assess
from shadow.schema import database_url, open_engine
from shadow.store import ShadowStore
from shadow.timeline import Window
from tests.conftest import Publisher, plant_dict, running, wait_until
from tests.faults.harness import SIGNALS, Flow, PostgresCluster

pytestmark = [pytest.mark.faults, pytest.mark.slow]

TOTAL = 20_000  # readings, 21 bytes each in the outbox: about 8 times the cap
CAP_BYTES = 50_000
EVENT_EVERY = 100  # readings between two state events
EVENTS_SENT = TOTAL // EVENT_EVERY


@pytest.fixture
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    cluster.start()
    yield cluster
    cluster.destroy()


def kept_in_outbox(path: Path, sink: str, config: OmbreConfig
                   ) -> tuple[np.ndarray, list[tuple[str, str, object]]]:
    """What the outbox still holds for `sink`: the flow index of each reading (see
    Flow), sorted, and each event as (machine, name, value)."""
    registry = config.registry()
    position = np.full(len(registry), -1, np.int64)  # signal id -> index in SIGNALS
    for i, (machine, signal) in enumerate(SIGNALS):
        position[registry.id_of(machine, signal) or 0] = i
    db = sqlite3.connect(path)
    try:
        cursor = db.execute("SELECT seq FROM outbox_cursor WHERE sink = ?", (sink,)).fetchone()[0]
        rows = db.execute("SELECT kind, n, payload FROM outbox WHERE seq > ? ORDER BY seq",
                          (cursor,)).fetchall()
    finally:
        db.close()
    index: list[np.ndarray] = []
    events: list[tuple[str, str, object]] = []
    for kind, n, payload in rows:
        if kind == TELEMETRY:
            batch = decode_batch(payload, n)
            index.append(batch.value.astype(np.int64) * len(SIGNALS) + position[batch.signal_id])
        else:
            assert kind == EVENTS
            events += [(m, name, value) for _, m, name, value, _ in orjson.loads(payload)]
    return (np.sort(np.concatenate(index)) if index else np.empty(0, np.int64)), events


async def test_outbox_over_its_cap_drops_exactly_the_oldest_for_the_sink_that_is_down(
        broker: Mosquitto, postgres: PostgresCluster, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    data = plant_dict(broker.port, tmp_path / "data", outbox_max_bytes=CAP_BYTES,
                      batch_max_messages=100)  # small deliveries: none bigger than the cap
    data["shadow"] = {"database": postgres.url("cap")}
    config = validate_config(data)
    postgres.stop()  # from now on the shadow's connections are refused
    flow = Flow(Publisher(broker.port, client_id="faults-publisher"))
    try:
        async with running(config) as gateway:
            counters = gateway.counters
            source = counters.connector("broker", "source")
            shadow = counters.connector("shadow", "sink")
            outbox = counters.connector("outbox", "runtime")
            await wait_until(lambda: source.health is Health.UP, what="the source to connect")
            for chunk in range(0, TOTAL, EVENT_EVERY):
                flow.publish_until(chunk + EVENT_EVERY)
                flow.publisher.publish("plant/l1/m1/state", json.dumps(
                    {"value": f"S{chunk}", "ts": flow.base_ms + chunk}))
                await asyncio.sleep(0.001)
            await wait_until(lambda: (flow.publish_until(TOTAL), source.readings == TOTAL
                                      and source.events == EVENTS_SENT)[1],
                             timeout_s=60, what="the source to receive every reading and event")
            timeseries = counters.connector("timeseries", "sink")
            state_id = config.registry().id_of("m1", "state")
            # The sink also writes the gateway's own overflow event: count the states.
            await wait_until(lambda: timeseries.readings == TOTAL
                             and counters.signal_written[state_id] == EVENTS_SENT,
                             timeout_s=60, what="the time-series sink to write every reading "
                             "and state")
            dropped = outbox.dropped
            assert shadow.health is Health.DOWN
            assert outbox.health is Health.DEGRADED
            kept, events = kept_in_outbox(config.data_dir / "gateway.sqlite", "shadow", config)
            postgres.start()
            await wait_until(lambda: shadow.readings == TOTAL - dropped, timeout_s=60,
                             what="the shadow to write what was kept")
            await wait_until(lambda: outbox.health is Health.UP, what="the overflow to end")
            assert counters.signal_dropped.sum() == dropped
    finally:
        flow.publisher.close()
    print(f"\noutbox cap {CAP_BYTES} bytes, shadow's PostgreSQL down: {TOTAL} readings, "
          f"{dropped} dropped (counted) for the shadow, {len(kept)} kept, "
          f"{sum(e[1] == 'state' for e in events)} state events kept; the time-series sink "
          "lost none")
    assert 0 < dropped < TOTAL
    np.testing.assert_array_equal(kept, np.arange(dropped, TOTAL))  # exactly the oldest went
    assert [v for m, name, v in events if name == "state"] == [
        f"S{chunk}" for chunk in range(0, TOTAL, EVENT_EVERY)]
    assert (GATEWAY_MACHINE, OVERFLOW_EVENT, "started dropping telemetry") in events
    raised = [r for r in caplog.records if "over its byte cap" in r.getMessage()]
    assert [r.levelname for r in raised] == ["WARNING"]
    with open_store(config.data_dir / "timeseries.sqlite") as store:
        for k, (machine, signal) in enumerate(SIGNALS):
            np.testing.assert_array_equal(store.read(machine, signal, 0, 2**62)[1],
                                          flow.expected(k))
        overflow = [e.value for e in store.read_events(GATEWAY_MACHINE, 0, 2**62)]
    assert overflow == ["started dropping telemetry",
                        f"stopped dropping: {dropped} readings dropped"]
    # The shadow recorded them with its run: the assessment shows them.
    engine = open_engine(database_url(postgres.url("cap"), config.data_dir))
    try:
        result = assess(ShadowStore(engine), config, Window(0, 2**62)).to_dict()
    finally:
        engine.dispose()
    [lost] = [e for e in result["evidence"] if e["key"] == "readings_lost"]
    assert (lost["value"], lost["unit"]) == (dropped, "readings")
