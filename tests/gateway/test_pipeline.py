"""MQTT to SQLite through the whole runtime, against a real Mosquitto of the test's own."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry, generate_latest

from bench.mosquitto import Mosquitto
from connectors.sqlite_sink import SqliteSink
from connectors.sqlite_ts import open_store
from gateway.counters import Health
from gateway.metrics import GatewayCollector
from ombre.config import load_config, validate_config
from tests.conftest import (
    Publisher,
    RecordingSink,
    metric,
    plant_config,
    plant_dict,
    require_binary,
    running,
    wait_until,
)

ALL_TIME = (0, 2**62)


def store_values(data_dir: Path, machine: str, signal: str) -> tuple[np.ndarray, np.ndarray]:
    with open_store(data_dir / "timeseries.sqlite") as store:
        ts, value, _ = store.read(machine, signal, *ALL_TIME)
    return ts, value


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_every_format_arrives_exactly(broker: Mosquitto, publisher: Publisher,
                                            tmp_path: Path, protocol: str) -> None:
    """In MQTT 5 and in 3.1.1 (whose subscription once raised in paho's thread, and the
    source hung without a word)."""
    data = plant_dict(broker.port, tmp_path / "data")
    data["sources"][0]["protocol"] = protocol
    config = validate_config(data)
    base = time.time_ns() // 1_000_000 - 60_000
    async with running(config) as gateway:
        await wait_until(lambda: gateway.counters.connector("broker", "source").health
                         is Health.UP, what="the MQTT source to connect")
        for i in range(300):
            publisher.publish(f"plant/l1/m{1 + i % 3}/temp",
                              orjson.dumps({"value": i, "ts": base + i}))
        publisher.publish("plant/l1/m2", orjson.dumps({"speed": 1500, "temp": 20.5,
                                                       "ts": base + 1000}))
        publisher.publish("batch/m3/speed", orjson.dumps(
            {"ts": [base + k for k in range(100)], "value": list(range(100))}))
        publisher.publish("raw/m1/speed", b"42.5")
        publisher.publish("plant/l1/m1/state", orjson.dumps({"value": "RUNNING",
                                                             "ts": base + 5}))
        sink = gateway.counters.connector("timeseries", "sink")
        await wait_until(lambda: sink.readings == 300 + 2 + 100 + 1 and sink.events == 1,
                         what="every reading in SQLite")
    data = tmp_path / "data"
    ts, value = store_values(data, "m1", "temp")
    np.testing.assert_array_equal(value, np.arange(0, 300, 3))
    np.testing.assert_array_equal(ts, (base + np.arange(0, 300, 3)) * 1_000_000)
    assert store_values(data, "m2", "temp")[1].tolist() == [*range(1, 300, 3), 20.5]
    assert store_values(data, "m2", "speed")[1].tolist() == [1500]
    assert store_values(data, "m3", "speed")[1].tolist() == list(range(100))
    assert store_values(data, "m1", "speed")[1].tolist() == [42.5]
    with open_store(data / "timeseries.sqlite") as store:
        events = store.read_events("m1", *ALL_TIME)
    assert [(e.name, e.value) for e in events] == [("state", "RUNNING")]


async def test_events_count_per_signal_like_readings(broker: Mosquitto, publisher: Publisher,
                                                    tmp_path: Path) -> None:
    """A string signal's values (states) travel as events; /metrics counts them per
    signal, received and written, as it counts readings. One sink (the shadow off):
    `written` adds up what every sink wrote."""
    config = validate_config({**plant_dict(broker.port, tmp_path / "data"),
                              "shadow": {"enabled": False}})
    registry = config.registry()
    state, temp = registry.id_of("m1", "state"), registry.id_of("m1", "temp")
    assert state is not None
    assert temp is not None
    base = time.time_ns() // 1_000_000 - 60_000
    async with running(config) as gateway:
        await wait_until(lambda: gateway.counters.connector("broker", "source").health
                         is Health.UP, what="the MQTT source to connect")
        for i in range(9):
            publisher.publish("plant/l1/m1/state", orjson.dumps(
                {"value": ["RUNNING", "IDLE", "DOWN"][i % 3], "ts": base + i}))
        publisher.publish("plant/l1/m1", orjson.dumps({"state": "SETUP", "temp": 20.5,
                                                       "ts": base + 100}))
        sink = gateway.counters.connector("timeseries", "sink")
        await wait_until(lambda: sink.events == 10 and sink.readings == 1,
                         what="every event in SQLite")
        received = gateway.counters.signal_received
        assert (received[state], received[temp]) == (10, 1)
        assert received.sum() == 11
        assert gateway.counters.signal_written[state] == 10
        assert gateway.counters.signal_last_seen_ns[state] == (base + 100) * 1_000_000
        labels = [(info.machine, info.signal) for info in registry]
        registry_out = CollectorRegistry(auto_describe=False)
        registry_out.register(GatewayCollector(gateway.counters, labels))
        text = generate_latest(registry_out).decode()
    for name in ("ombre_signal_received_total", "ombre_signal_written_total"):
        assert metric(text, name, machine="m1", signal="state") == 10


BAD_PAYLOADS = {
    "malformed JSON": ("plant/l1/m1/temp", b'{"value": 1,'),
    "wrong type": ("plant/l1/m1/temp", b'{"value": "hot"}'),
    "NaN": ("raw/m1/temp", b"nan"),
    "infinity": ("plant/l1/m1/temp", b'{"value": 1e999}'),
    "10 MB": ("plant/l1/m1/temp", b"[" * (10 * 1024 * 1024)),
    "deeply nested": ("plant/l1/m1/temp", b'{"value": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    "unknown topic": ("plant/l1/m9/temp", b'{"value": 1}'),
    "far future": ("plant/l1/m1/temp", b'{"value": 1, "ts": 4102444800000}'),
    "seconds not ms": ("plant/l1/m1/temp", b'{"value": 1, "ts": 1750000000}'),
}


async def test_bad_payloads_are_quarantined_and_the_rest_goes_on(
        broker: Mosquitto, publisher: Publisher, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    config = plant_config(broker.port, tmp_path / "data")
    async with running(config) as gateway:
        source = gateway.counters.connector("broker", "source")
        await wait_until(lambda: source.health is Health.UP, what="the source to connect")
        for n, (topic, payload) in enumerate(BAD_PAYLOADS.values()):
            publisher.publish(topic, payload)
            publisher.publish("plant/l1/m2/temp", orjson.dumps({"value": n}))
        sink = gateway.counters.connector("timeseries", "sink")
        await wait_until(lambda: sink.readings == len(BAD_PAYLOADS),
                         what="the good readings between the bad ones")
        assert source.quarantined == len(BAD_PAYLOADS)
    db = sqlite3.connect(tmp_path / "data" / "gateway.sqlite")
    rows = db.execute("SELECT topic, reason, length(head) FROM quarantine ORDER BY id").fetchall()
    db.close()
    assert [r[0] for r in rows] == [t for t, _ in BAD_PAYLOADS.values()]
    reasons = dict(zip(BAD_PAYLOADS, (r[1] for r in rows), strict=True))
    assert "exceeds max_payload_bytes" in reasons["10 MB"]
    assert "nest" in reasons["deeply nested"]
    assert "m9" in reasons["unknown topic"]
    assert "future" in reasons["far future"]
    assert "seconds" in reasons["seconds not ms"]
    assert "finite" in reasons["NaN"]
    assert all(length <= 256 for *_, length in rows)
    logged = [r.getMessage() for r in caplog.records if "quarantined" in r.getMessage()]
    assert len(logged) == 1  # one line for the burst, not one per payload
    assert "source broker" in logged[0]
    assert store_values(tmp_path / "data", "m2", "temp")[1].tolist() == list(
        range(len(BAD_PAYLOADS)))


async def test_the_thingsboard_shape_arrives_through_payload_paths(
        broker: Mosquitto, publisher: Publisher, tmp_path: Path) -> None:
    """`{"ts": ..., "values": {...}}` through a real broker: read with `values_path` and
    `ts_path`; a message whose shape does not match is quarantined with the path."""
    data = plant_dict(broker.port, tmp_path / "data")
    data["sources"][0]["subscriptions"].append(
        {"topic": "v1/devices/{machine}/telemetry", "format": "object",
         "values_path": "values", "ts_path": "ts"})
    base = time.time_ns() // 1_000_000 - 60_000
    async with running(validate_config(data)) as gateway:
        source = gateway.counters.connector("broker", "source")
        await wait_until(lambda: source.health is Health.UP, what="the source to connect")
        for i in range(50):
            publisher.publish("v1/devices/m1/telemetry", orjson.dumps(
                {"ts": base + i, "values": {"temp": i / 2, "speed": 1000 + i}}))
        publisher.publish("v1/devices/m2/telemetry", orjson.dumps({"ts": base, "temp": 1}))
        publisher.publish("v1/devices/m2/telemetry", orjson.dumps(
            {"ts": base, "values": {"state": "RUNNING"}}))
        sink = gateway.counters.connector("timeseries", "sink")
        await wait_until(lambda: sink.readings == 100 and sink.events == 1,
                         what="every reading in SQLite")
        assert source.quarantined == 1
    ts, value = store_values(tmp_path / "data", "m1", "temp")
    np.testing.assert_array_equal(ts, (base + np.arange(50)) * 1_000_000)
    np.testing.assert_array_equal(value, np.arange(50) / 2)
    assert store_values(tmp_path / "data", "m1", "speed")[1].tolist() == list(range(1000, 1050))
    db = sqlite3.connect(tmp_path / "data" / "gateway.sqlite")
    rows = db.execute("SELECT topic, reason FROM quarantine").fetchall()
    db.close()
    assert rows == [("v1/devices/m2/telemetry", "values_path 'values': no key 'values'")]


async def test_broker_restart_during_a_qos1_flow_loses_nothing_and_keeps_order(
        broker: Mosquitto, tmp_path: Path) -> None:
    config = plant_config(broker.port, tmp_path / "data")
    publisher = Publisher(broker.port)
    base = time.time_ns() // 1_000_000 - 60_000
    total = 3000
    registry = config.registry()
    recorder = RecordingSink(SqliteSink(config.sinks[0], config.data_dir, registry))
    try:
        async with running(config, [recorder]) as gateway:
            source = gateway.counters.connector("broker", "source")
            sink = gateway.counters.connector("timeseries", "sink")
            await wait_until(lambda: source.health is Health.UP, what="the source to connect")
            held = []  # published while the broker is down: paho keeps them
            for i in range(total):
                if i == 1000:
                    await wait_until(lambda: sink.readings > 0, what="the flow to start")
                    broker.stop()
                    await wait_until(lambda: source.health is Health.DOWN,
                                     what="the source to notice the broker is gone")
                if i == 2000:
                    broker.start()
                    # paho resends what it held once the broker's CONNACK arrives, and a
                    # message published meanwhile could overtake them: the publisher (not
                    # Ombre) must keep order, so it waits for its backlog first.
                    await wait_until(lambda: all(m.mid in publisher.acked for m in held),
                                     timeout_s=60, what="the publisher's backlog")
                info = publisher.publish(f"plant/l1/m{1 + i % 3}/temp",
                                         orjson.dumps({"value": i, "ts": base + i}))
                if 1000 <= i < 2000:
                    held.append(info)
            await wait_until(lambda: len(store_values(tmp_path / "data", "m1", "temp")[0])
                             == total // 3 and len(store_values(tmp_path / "data", "m3",
                                                                "temp")[0]) == total // 3,
                             timeout_s=60, what="every reading after the restart")
    finally:
        publisher.close()
    for k, machine in enumerate(("m1", "m2", "m3")):
        _, value = store_values(tmp_path / "data", machine, "temp")
        np.testing.assert_array_equal(value, np.arange(k, total, 3))  # none lost
        arrival = recorder.written[registry.id_of(machine, "temp") or 0]
        first_seen = list(dict.fromkeys(arrival))  # redelivered copies come again later
        assert first_seen == value.tolist()  # each reading first arrived in publish order


async def test_a_broker_with_stock_limits_loses_nothing(tmp_path: Path) -> None:
    """Mosquitto's defaults (20 messages in flight, 1,000 queued) with acks that wait for
    the outbox commit: the MQTT 5 receive maximum keeps the flow going."""
    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    broker = Mosquitto(require_binary("mosquitto"), workdir, unlimited=False)
    broker.start()
    publisher = Publisher(broker.port)
    base = time.time_ns() // 1_000_000 - 60_000
    try:
        async with running(plant_config(broker.port, tmp_path / "data")) as gateway:
            source = gateway.counters.connector("broker", "source")
            await wait_until(lambda: source.health is Health.UP, what="the source to connect")
            infos = [publisher.publish("plant/l1/m1/temp",
                                       orjson.dumps({"value": i, "ts": base + i}))
                     for i in range(5000)]
            sink = gateway.counters.connector("timeseries", "sink")
            await wait_until(lambda: sink.readings >= 5000, timeout_s=60,
                             what="5,000 readings through a stock broker")
    finally:
        publisher.close()
        broker.stop()
    assert all(info.is_published() for info in infos)
    np.testing.assert_array_equal(store_values(tmp_path / "data", "m1", "temp")[1],
                                  np.arange(5000))


async def test_username_and_password_from_the_environment(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    broker = Mosquitto(require_binary("mosquitto"), workdir, users={"ombre": "s3cret-pw"})
    broker.start()
    try:
        for password, health in (("wrong-pw", Health.DOWN), ("s3cret-pw", Health.UP)):
            path = tmp_path / f"{password}.yaml"
            data = plant_dict(broker.port, tmp_path / "data")
            data["sources"][0].update(username="ombre", password="${MQTT_PASSWORD}")
            path.write_text(json.dumps(data))
            config = load_config(path, {"MQTT_PASSWORD": password})
            async with running(config) as gateway:
                source = gateway.counters.connector("broker", "source")
                await wait_until(lambda s=source, h=health: s.health is h,
                                 what=f"the source {health}")
                if health is Health.DOWN:
                    assert "refused" in str(source.last_error)
    finally:
        broker.stop()
    assert "s3cret-pw" not in caplog.text
    assert "wrong-pw" not in caplog.text


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a broker certificate it signed for 127.0.0.1: (ca, cert, key)."""
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "broker.pem", directory / "broker.key", directory / "b.csr"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for command in (
        f"req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout {ca_key} "
        f"-out {ca}",
        f"req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout {key} -out {csr}",
        f"x509 -req -in {csr} -CA {ca} -CAkey {ca_key} -CAcreateserial -days 2 "
        f"-extfile {ext} -out {cert}",
    ):
        subprocess.run([require_binary("openssl"), *command.split()], check=True,
                       capture_output=True)
    key.chmod(0o644)  # mosquitto reads it as the current user
    return ca, cert, key


# paho-mqtt 2.2 leaves the socket of a failed TLS handshake to the garbage collector,
# which closes it and warns; the warning is paho's, not a leak of ours.
@pytest.mark.filterwarnings("ignore:Exception ignored in. <ssl.SSLSocket"
                            ":pytest.PytestUnraisableExceptionWarning")
async def test_tls_connects_to_a_trusted_broker_and_refuses_an_unknown_one(
        tmp_path: Path) -> None:
    ca, cert, key = make_certificates(tmp_path)
    (tmp_path / "other").mkdir()
    other_ca, _, _ = make_certificates(tmp_path / "other")
    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    broker = Mosquitto(require_binary("mosquitto"), workdir, tls=(cert, key))
    broker.start()
    try:
        for trusted, health in ((other_ca, Health.DOWN), (ca, Health.UP)):
            data = plant_dict(broker.port, tmp_path / "data")
            data["sources"][0]["tls"] = {"ca_file": str(trusted)}
            async with running(validate_config(data)) as gateway:
                source = gateway.counters.connector("broker", "source")
                await wait_until(lambda s=source, h=health: s.health is h,
                                 what=f"the TLS source {health}")
                if health is Health.DOWN:
                    assert "CERTIFICATE_VERIFY_FAILED" in str(source.last_error)
                    continue
                publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tls-pub")
                publisher.tls_set(ca_certs=str(ca))
                publisher.connect("127.0.0.1", broker.port)
                publisher.loop_start()
                publisher.publish("plant/l1/m1/temp", b'{"value": 7}', qos=1).wait_for_publish(5)
                sink = gateway.counters.connector("timeseries", "sink")
                await wait_until(lambda s=sink: s.readings == 1, what="a reading over TLS")
                publisher.disconnect()
                publisher.loop_stop()
    finally:
        broker.stop()
