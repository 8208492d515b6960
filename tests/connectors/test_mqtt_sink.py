"""The MQTT sink (Unified Namespace) against real Mosquittos: readings from a source
broker reach a second broker under their ISA-95 topics, through an outage of the
second one with nothing lost or published twice; the shadow's live model is retained
for a late subscriber; filters thin readings out; bad config blocks are refused."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bench.mosquitto import Mosquitto
from gateway.config_load import ConfigError
from gateway.counters import Health
from gateway.runtime import Gateway
from gateway.types import Batch, Event
from ombre.app import build_context, build_sink
from ombre.config import load_config, validate_config
from tests.conftest import (
    Publisher,
    own_broker,
    plant_dict,
    require_binary,
    running,
    wait_until,
)
from tests.gateway.test_pipeline import make_certificates

TS0 = 1_700_000_000_000  # ms


class Collector:
    """A QoS 1 subscriber with a persistent session on the broker, reconnecting by
    itself: it keeps every message of `topic`, with whether the broker flagged it as a
    redelivery (its own QoS 1 resend to this client, not a second publication)."""

    def __init__(self, port: int, topic: str, client_id: str = "collector") -> None:
        self.messages: list[tuple[str, dict[str, Any] | list[Any], bool, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311, clean_session=False)
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.on_connect = lambda c, _u, _f, _r, _p: c.subscribe(topic, 1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, json.loads(message.payload), message.dup,
                                  message.retain))

    def readings(self) -> list[tuple[str, dict[str, Any], bool]]:
        with self._lock:
            return [(t, p, dup) for t, p, dup, _ in self.messages if isinstance(p, dict)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def northbound(tmp_path: Path) -> Iterator[Mosquitto]:
    """The broker the sink publishes to, separate from the source's."""
    with own_broker(tmp_path / "northbound") as started:
        yield started


async def until_up(gateway: Gateway) -> None:
    for name, kind in (("broker", "source"), ("uns", "sink")):
        await wait_until(lambda: gateway.counters.connector(name, kind).health  # noqa: B023
                         is Health.UP, what=f"the {kind} {name} to connect")


def sink_block(port: int, **keys: object) -> dict[str, Any]:
    return {"type": "mqtt", "name": "uns", "port": port, "client_id": "uns-test", **keys}


def config_with(source_port: int, sink_port: int, data_dir: Path, *,
                shadow: bool = False, **keys: object) -> dict[str, Any]:
    data = plant_dict(source_port, data_dir)
    data["sinks"] = [sink_block(sink_port, **keys)]
    data["shadow"] = {"enabled": shadow}
    return data


async def test_an_outage_of_the_northbound_broker_loses_and_repeats_nothing(
        broker: Mosquitto, northbound: Mosquitto, publisher: Publisher, tmp_path: Path) -> None:
    config = validate_config(config_with(broker.port, northbound.port, tmp_path / "data"))
    collector = Collector(northbound.port, "ombre/#")
    per_signal = 300
    expected = {f"ombre/site/default/l1/{m}/{s}" for m in ("m1", "m2") for s in ("temp", "speed")}
    try:
        async with running(config) as gateway:
            await until_up(gateway)
            for i in range(per_signal):
                if i == per_signal // 3:
                    northbound.stop()  # the sink's broker goes away mid-stream
                if i == 2 * per_signal // 3:
                    northbound.start()
                for topic in sorted(expected):
                    m, s = topic.split("/")[-2:]
                    publisher.publish(f"plant/l1/{m}/{s}",
                                      json.dumps({"value": i, "ts": TS0 + i}))
                await asyncio.sleep(0.005)
            await wait_until(lambda: len({(t, p["ts"]) for t, p, _ in collector.readings()})
                             == per_signal * len(expected), timeout_s=60,
                             what="every reading at the northbound broker")
    finally:
        collector.close()
    readings = collector.readings()
    assert {t for t, _, _ in readings} == expected
    for topic in expected:
        copies = [(p["ts"], dup) for t, p, dup in readings if t == topic]
        # Every reading, in order of first arrival. A reading the broker had sent to the
        # collector when it stopped comes again flagged DUP after the restart, and that
        # copy may be the first the collector sees: the broker's QoS 1, not Ombre's.
        assert list(dict.fromkeys(ts for ts, _ in copies)) == \
            [TS0 + i for i in range(per_signal)], topic
        # What Ombre published again would arrive unflagged: nothing did.
        fresh = [ts for ts, dup in copies if not dup]
        assert len(fresh) == len(set(fresh)), topic
    first = next(p for t, p, _ in readings if t == "ombre/site/default/l1/m1/temp")
    assert first == {"ts": TS0, "value": 0.0, "quality": 0}


async def test_machine_batches_and_filters(broker: Mosquitto, northbound: Mosquitto,
                                           publisher: Publisher, tmp_path: Path) -> None:
    """batch: machine puts a machine's readings into arrays on its own topic; a
    deadband and a minimum interval thin out one signal of m1; deadband 0 drops m2's
    unchanged readings."""
    config = validate_config(config_with(
        broker.port, northbound.port, tmp_path / "data", batch="machine",
        prefix="acme/plant", default_area="hall",
        filters=[{"machine": "m2", "deadband": 0},  # changes only
                 {"signal": "temp", "machine": "m1", "deadband": 1.0, "min_interval_s": 0.008}]))
    collector = Collector(northbound.port, "acme/#")
    values = [20.0, 20.5, 21.2, 21.3, 21.9, 25.0, 25.0]  # 5 ms apart

    def received() -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for topic, payload, _, _ in list(collector.messages):
            assert isinstance(payload, list)
            found.setdefault(topic, []).extend(payload)
        return found

    m1, m2 = "acme/plant/site/hall/l1/m1", "acme/plant/site/hall/l1/m2"
    try:
        async with running(config) as gateway:
            await until_up(gateway)
            for i, v in enumerate(values):
                for m in ("m1", "m2"):
                    publisher.publish(f"plant/l1/{m}/temp",
                                      json.dumps({"value": v, "ts": TS0 + 5 * i}))
            await wait_until(lambda: len(received().get(m2, [])) == len(values) - 1
                             and received().get(m1, [{}])[-1].get("value") == 25.0,
                             what="both machines' last readings")
    finally:
        collector.close()
    found = received()
    assert set(found) == {m1, m2}
    assert [r["value"] for r in found[m2]] == values[:-1]  # the last repeats a value
    # ts 5 and 15 come within 8 ms of the last kept; 21.9 is within 1.0 of 21.2, and the
    # last 25.0 of 25.0.
    assert [(r["ts"] - TS0, r["value"]) for r in found[m1]] == [(0, 20.0), (10, 21.2),
                                                                  (25, 25.0)]
    assert found[m1][0] == {"signal": "temp", "ts": TS0, "value": 20.0, "quality": 0}


PARTS = {"state", "job", "counts", "kpi", "alerts"}  # the live model's topics
SHADOW_MACHINE = {
    "id": "press", "signals": [{"name": "status", "type": "string"}, {"name": "count"},
                               {"name": "order", "type": "string"}],
    "state": {"type": "table", "signal": "status",
              "map": {"RUNNING": "APT", "BROKEN": {"category": "ADET", "failure": True}}},
    "counters": {"total": "count"}, "job_signal": "order",
}


async def test_a_late_subscriber_sees_the_live_model_at_once(
        broker: Mosquitto, northbound: Mosquitto, publisher: Publisher, tmp_path: Path) -> None:
    data = config_with(broker.port, northbound.port, tmp_path / "data", shadow=True,
                       model_interval_s=0.1)
    data["sites"] = [{"id": "works", "areas": [{"id": "hall-a", "lines": [
        {"id": "l1", "machines": [SHADOW_MACHINE]}]}]}]
    config = validate_config(data)
    now_ms = int(time.time() * 1000)
    base = "ombre/works/hall-a/l1/press/_shadow"
    async with running(config) as gateway:
        await until_up(gateway)
        for i, (topic, value) in enumerate([("order", "WO-7"), ("status", "RUNNING"),
                                            ("count", 10), ("count", 14), ("status", "BROKEN")]):
            publisher.publish(f"plant/l1/press/{topic}",
                              json.dumps({"value": value, "ts": now_ms - 5000 + i * 1000}))
        watcher = Collector(northbound.port, f"{base}/#", "watcher")
        try:
            # Every part of the model published at least once, the state the last one.
            await wait_until(lambda: any(t.endswith("/state") and p["state"] == "BROKEN"
                                         for t, p, _, _ in watcher.messages)
                             and {t.rsplit("/", 1)[1] for t, *_ in watcher.messages} >= PARTS,
                             what="the model's state")
        finally:
            watcher.close()
        # A subscriber that comes now gets the present from the broker's retained store.
        late = Collector(northbound.port, f"{base}/#", "late")
        try:
            await wait_until(lambda: {t.rsplit("/", 1)[1] for t, _, _, retained in late.messages
                                      if retained} >= PARTS,
                             what="the retained model")
            model = {t.rsplit("/", 1)[1]: p for t, p, _, retained in late.messages if retained}
        finally:
            late.close()
    assert model["state"]["state"] == "BROKEN"
    assert model["state"]["category"] == "ADET"
    assert model["state"]["failure"] is True
    assert model["job"]["job"] == "WO-7"
    assert model["counts"]["produced"] == 4
    assert set(model["kpi"]) >= {"availability", "effectiveness", "quality_ratio", "oee"}
    assert model["alerts"] == []


@pytest.mark.parametrize(("keys", "where", "message"), [
    ({"topic": "ombre/{machine}"}, "sinks[0].topic",
     "expected a template with {signal}"),
    ({"topic": "ombre/{plant}/{machine}/{signal}"}, "sinks[0].topic",
     "found {plant}"),
    ({"topic": "ombre/#/{machine}/{signal}"}, "sinks[0].topic", "no '#' or '+'"),
    ({"prefix": "a//b"}, "sinks[0].prefix", "without '#', '+', or an empty level"),
    ({"batch": "machine", "topic": "{prefix}/{machine}/{signal}/v"}, "sinks[0].topic",
     "ending in /{signal}"),
    ({"qos": 3}, "sinks[0].qos", "expected one of 0, 1, 2, found 3"),
    ({"filters": [{"signal": "humidity", "deadband": 1}]}, "sinks[0].filters[0]",
     "expected a number signal declared in the plant, found any machine/humidity"),
    ({"filters": [{"machine": "m1", "signal": "state"}]}, "sinks[0].filters[0]",
     "found m1/state"),
    ({"filters": [{"machine": "m9"}]}, "sinks[0].filters[0]", "found m9/any signal"),
    ({"filters": [{"signal": "temp", "deadband": -1}]}, "sinks[0].filters[0].deadband",
     "expected a number of at least 0, found -1"),
])
def test_bad_sink_blocks_are_refused_naming_the_key(tmp_path: Path, keys: dict[str, Any],
                                                     where: str, message: str) -> None:
    data = config_with(1883, 1883, tmp_path / "data", **keys)
    path = tmp_path / "ombre.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as error:
        load_config(path, {})
    text = str(error.value)
    assert where in text, text
    assert message in text, text


async def test_tls_credentials_and_mqtt_3_1_1(broker: Mosquitto, publisher: Publisher,
                                              tmp_path: Path) -> None:
    """The sink speaks TLS with a password and MQTT 3.1.1 through the source's own
    connection keys; a wrong password leaves it down, saying the broker refused it."""
    ca, cert, key = make_certificates(tmp_path)
    (tmp_path / "northbound").mkdir()
    secure = Mosquitto(require_binary("mosquitto"), tmp_path / "northbound",
                       users={"ombre": "s3cret-pw"}, tls=(cert, key))
    secure.start()
    try:
        for password, health in (("wrong-pw", Health.DOWN), ("s3cret-pw", Health.UP)):
            data = config_with(broker.port, secure.port, tmp_path / password,
                               protocol="3.1.1", username="ombre", password="${UNS_PASSWORD}",
                               tls={"ca_file": str(ca)})
            path = tmp_path / f"{password}.json"
            path.write_text(json.dumps(data))
            config = load_config(path, {"UNS_PASSWORD": password})
            async with running(config) as gateway:
                sink = gateway.counters.connector("uns", "sink")
                if health is Health.DOWN:
                    await wait_until(lambda s=sink: s.retries > 0, what="a refused connect")
                    assert sink.health is Health.DOWN
                    assert "refused" in str(sink.last_error)
                    continue
                await until_up(gateway)
                publisher.publish("plant/l1/m1/temp", json.dumps({"value": 7, "ts": TS0}))
                await wait_until(lambda s=sink: s.readings == 1, what="a reading over TLS")
    finally:
        secure.stop()


async def test_readings_and_events_of_one_write_go_out_in_time_order(
        northbound: Mosquitto, tmp_path: Path) -> None:
    """A write holds numbers and strings (events) of a machine, as after a backlog: they
    are published in time order together, so that a consumer taking them as they come
    (a fleet's shadow) sees each state among the readings where it belongs."""
    config = validate_config(config_with(1883, northbound.port, tmp_path / "data"))
    sink = build_sink(config.sinks[0], build_context(config))
    temp = config.registry().id_of("m1", "temp")
    assert temp is not None
    seconds = np.arange(1, 6, dtype=np.int64)
    batch = Batch(seconds * 10**9, np.full(5, temp, np.int32), seconds.astype(np.float64),
                  np.zeros(5, np.uint8))
    events = [Event(1_500_000_000, "m1", "state", "RUNNING"),
              Event(3_500_000_000, "m1", "state", "STOPPED")]
    collector = Collector(northbound.port, "ombre/#")
    try:
        await sink.connect()
        await sink.write(batch, events)
        await wait_until(lambda: len(collector.readings()) == 7, what="7 messages")
    finally:
        await sink.aclose()
        collector.close()
    assert [(topic.rsplit("/", 1)[1], payload["ts"]) for topic, payload, _ in
            collector.readings()] == [("temp", 1000), ("state", 1500), ("temp", 2000),
                                      ("temp", 3000), ("state", 3500), ("temp", 4000),
                                      ("temp", 5000)]
