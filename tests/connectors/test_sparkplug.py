"""Sparkplug B both ways against real Mosquitto brokers and an independent peer
(tests/sparkplug/node.mjs: protobufjs and MQTT.js, none of Ombre's encoder):

- the sink (Ombre as an edge node) read by the peer as a host application: births with
  aliases, data by alias, seq 0-255 in order, rebirth on NCMD, the primary host's
  STATE held to (data waits in the outbox; an older STATE ignored), a broker outage
  losing nothing, DDEATH on silence, NDEATH as the will with the birth's bdSeq, bdSeq
  going on across a restart;
- the source (Ombre as the primary host application, its STATE retained) reading the
  peer as an edge node: births define the signals, data maps through aliases, a seq
  gap or data before birth asks for a rebirth and is recorded, NDEATH and DDEATH mark
  the machine offline in the shadow.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bench.mosquitto import Mosquitto, free_port
from connectors.sparkplug_config import SparkplugSinkConfig
from connectors.sparkplug_sink import SparkplugSink
from gateway.types import OFFLINE_EVENT, Batch, Event, Quality, Sink
from ombre.app import build_sinks
from ombre.config import OmbreConfig, validate_config
from shadow.sink import ShadowSink
from tests.conftest import Publisher, plant_dict, require_binary, running, wait_until
from tests.connectors.sparkplug_peer import Line, Peer, peer

pytestmark = pytest.mark.slow


def seqs_follow(messages: Sequence[Line]) -> bool:
    """Each message's seq is the last one's plus one (mod 256), from an NBIRTH's 0."""
    last = None
    for message in messages:
        kind = message["topic"].split("/")[2]
        if kind == "NDEATH":
            continue
        seq = message.get("seq", 0)
        if kind == "NBIRTH":
            if seq != 0:
                return False
        elif last is None or seq != (last + 1) % 256:
            return False
        last = seq
    return True


def values_by_alias(peer: Peer, device: str, alias: int) -> list[Any]:
    return [m["value"] for x in peer.messages("DDATA", device) for m in x["metrics"]
            if m["alias"] == alias]


def alias_of(peer: Peer, device: str, name: str) -> int:
    births = peer.messages("DBIRTH", device)
    assert births, f"no DBIRTH for {device}"
    return int(next(m["alias"] for m in births[-1]["metrics"] if m["name"] == name))


def edge_config(source_port: int, sink_port: int, data_dir: Path,
                **sink: object) -> OmbreConfig:
    """The tests' plant (m1..m3: temp, speed, state) fed over plain MQTT, and published
    as the Sparkplug B edge node plant/ombre."""
    raw = plant_dict(source_port, data_dir)
    raw["sinks"] = [{"type": "sparkplug", "port": sink_port, "group_id": "plant",
                     "edge_node_id": "ombre", "keepalive_s": 5, **sink}]
    raw["shadow"] = {"enabled": False}
    return validate_config(raw)


def publish_temps(publisher: Publisher, values: range, machine: str = "m1") -> None:
    base = time.time_ns() // 1_000_000 - 60_000
    for i in values:
        publisher.publish(f"plant/l1/{machine}/temp",
                          orjson.dumps({"value": float(i), "ts": base + i}))


async def test_the_sink_is_an_edge_node_a_host_reads(broker: Mosquitto,
                                                     publisher: Publisher,
                                                     tmp_path: Path) -> None:
    with peer("host", str(broker.port)) as host:
        await host.event("ready")
        config = edge_config(broker.port, broker.port, tmp_path / "data")
        async with running(config):
            await host.wait(lambda: len(host.messages("DBIRTH")) == 3, "3 DBIRTH")
            [nbirth] = host.messages("NBIRTH")
            assert {m["name"]: m["value"] for m in nbirth["metrics"]} == {
                "bdSeq": 0, "Node Control/Rebirth": False}
            names = {m["name"]: (m["alias"], m["datatype"]) for m in
                     host.messages("DBIRTH", "m1")[0]["metrics"]}
            assert names == {"temp": (1, 10), "speed": (2, 10), "state": (3, 12)}  # Double, String
            publisher.publish("plant/l1/m1/state", orjson.dumps({"value": "RUNNING"}))
            publish_temps(publisher, range(5))
            await host.wait(lambda: len(values_by_alias(host, "m1", 1)) == 5, "5 temps")
            assert values_by_alias(host, "m1", 1) == [0.0, 1.0, 2.0, 3.0, 4.0]
            await host.wait(lambda: values_by_alias(host, "m1", 3) == ["RUNNING"], "the state")

            host.send("rebirth plant ombre")
            await host.wait(lambda: len(host.messages("NBIRTH")) == 2, "a second NBIRTH")
            await host.wait(lambda: len(host.messages("DBIRTH", "m1")) == 2, "m1 reborn")
            reborn = {m["name"]: m["value"] for m in host.messages("DBIRTH", "m1")[-1]["metrics"]}
            assert reborn["temp"] == 4.0  # births carry the last values
            assert reborn["state"] == "RUNNING"
            publish_temps(publisher, range(5, 300))  # past 255: seq wraps
            await host.wait(lambda: len(values_by_alias(host, "m1", 1)) == 300, "300 temps")
        assert values_by_alias(host, "m1", 1) == [float(i) for i in range(300)]
        ours = [x for x in host.messages() if "/ombre" in x["topic"] and "NCMD" not in x["topic"]]
        assert seqs_follow(ours)
        assert host.messages("NDEATH")[-1]["metrics"][0]["value"] == 0  # aclose's own


async def test_data_waits_for_the_primary_host_and_across_a_broker_outage(
        broker: Mosquitto, publisher: Publisher, tmp_path: Path) -> None:
    """Broker A feeds the gateway, broker B carries Sparkplug; the host's session on B is
    persistent. Nothing published while the host is offline or B is down is lost."""
    workdir = tmp_path / "broker-b"
    workdir.mkdir()
    b = Mosquitto(require_binary("mosquitto"), workdir)
    b.start()
    try:
        with peer("host", str(b.port)) as host:
            await host.event("ready")
            host.send("state scada online")
            await host.event("state")
            config = edge_config(broker.port, b.port, tmp_path / "data",
                                 primary_host_id="scada")
            async with running(config) as gateway:
                await host.wait(lambda: len(host.messages("NBIRTH")) == 1, "the NBIRTH")
                publish_temps(publisher, range(20))
                await host.wait(lambda: len(values_by_alias(host, "m1", 1)) == 20, "20 temps")

                host.send("state scada offline")
                await host.event("state", 2)
                publish_temps(publisher, range(20, 40))
                sink = gateway.counters.connector("sparkplug", "sink")
                await wait_until(lambda: sink.health.value == "down", what="the sink to hold")
                assert "not online" in (sink.last_error or "")
                assert len(values_by_alias(host, "m1", 1)) == 20
                host.send("state scada online")
                await host.wait(lambda: len(values_by_alias(host, "m1", 1)) == 40, "40 temps")
                assert len(host.messages("NBIRTH")) == 2  # born again for the host

                b.stop()
                publish_temps(publisher, range(40, 60))
                await wait_until(lambda: sink.health.value == "down", what="the sink down")
                b.start()
                await host.wait(lambda: len(values_by_alias(host, "m1", 1)) >= 60, "60 temps",
                                timeout_s=60)
            temps = values_by_alias(host, "m1", 1)
            assert sorted(set(temps)) == [float(i) for i in range(60)]
            assert len(host.messages("NBIRTH")) == 3  # B restarted: a new link, a new birth
            bd_seqs = [next(m["value"] for m in x["metrics"] if m["name"] == "bdSeq")
                       for x in host.messages("NBIRTH")]
            assert bd_seqs == [0, 0, 1]  # a rebirth keeps the link's bdSeq
    finally:
        b.stop()


async def test_a_broker_that_refused_the_first_connections_gets_the_data(
        broker: Mosquitto, publisher: Publisher, tmp_path: Path) -> None:
    """Broker B is not there when the gateway starts (connections refused), then comes:
    the sink links for real, births the node and sends what waited. A refused
    connection once left its client behind, and the next connect took it for a live
    link: the sink waited for a birth that never came ("primary host None is not
    online") as long as the process ran."""
    workdir = tmp_path / "broker-b"
    workdir.mkdir()
    b = Mosquitto(require_binary("mosquitto"), workdir, port=free_port())
    config = edge_config(broker.port, b.port, tmp_path / "data")
    try:
        async with running(config) as gateway:
            sink = gateway.counters.connector("sparkplug", "sink")
            await wait_until(lambda: sink.retries >= 2, what="two refused connections")
            assert "cannot connect to" in (sink.last_error or "")
            publish_temps(publisher, range(20))
            b.start()
            await wait_until(lambda: sink.readings == 20, timeout_s=30,
                             what="the 20 temps that waited, written to broker B")
            assert sink.health.value == "up"
    finally:
        b.stop()


async def test_ddeath_on_silence_and_ndeath_as_the_will(broker: Mosquitto,
                                                        tmp_path: Path) -> None:
    config = edge_config(broker.port, broker.port, tmp_path / "data", silence_s=1)
    [block] = config.sinks
    assert isinstance(block, SparkplugSinkConfig)
    registry = config.registry()
    with peer("host", str(broker.port)) as host:
        await host.event("ready")
        sink = SparkplugSink(block, config, registry)
        await sink.connect()
        await host.wait(lambda: len(host.messages("DDEATH")) == 3, "3 DDEATH on silence")
        temp = registry.id_of("m1", "temp")
        assert temp is not None
        now = time.time_ns()
        await sink.write(Batch(np.array([now, now + 1_000_000], np.int64),
                               np.array([temp, temp], np.int32), np.array([math.nan, 5.0]),
                               np.array([0, Quality.BAD | Quality.HISTORICAL], np.uint8)),
                         [Event(now, "m2", OFFLINE_EVENT, "died")])
        await host.wait(lambda: len(host.messages("DDATA", "m1")) == 1, "m1's DDATA")
        assert len(host.messages("DBIRTH", "m1")) == 2  # born again before its data
        nan, bad = host.messages("DDATA", "m1")[0]["metrics"]
        assert nan["is_null"]  # NaN travels as null
        assert "quality" not in nan  # good: no Quality property
        assert (bad["value"], bad["quality"], bad["is_historical"]) == (5.0, 0, True)
        await host.wait(lambda: len(host.messages("DDEATH", "m1")) == 2, "m1 silent again")

        assert sink._client is not None
        sink._client.socket().close()  # no DISCONNECT: the broker sends the will
        await host.wait(lambda: host.messages("NDEATH"), "the will")
        [death] = host.messages("NDEATH")
        assert death["metrics"] == [{"name": "bdSeq", "datatype": 8, "is_null": False,
                                     "is_historical": False, "value": 0}]
        await wait_until(lambda: sink._lost is not None, what="the sink to see the loss")
        await sink.connect()
        await host.wait(lambda: len(host.messages("NBIRTH")) == 2, "the next link's birth")
        assert host.messages("NBIRTH")[-1]["metrics"][0] == {
            "name": "bdSeq", "datatype": 8, "is_null": False, "is_historical": False,
            "value": 1}
        await sink.aclose()
    assert seqs_follow(host.messages())


async def test_bd_seq_goes_on_across_a_restart_and_a_stale_state_is_ignored(
        broker: Mosquitto, tmp_path: Path) -> None:
    """A second process goes on from its predecessor's bdSeq (whose will may still come);
    a STATE older than the last one (a retained one delivered late, a host's clock gone
    back) does not take the host offline, a newer one does."""
    config = edge_config(broker.port, broker.port, tmp_path / "data", primary_host_id="scada")
    [block] = config.sinks
    assert isinstance(block, SparkplugSinkConfig)
    registry = config.registry()
    temp = registry.id_of("m1", "temp")
    assert temp is not None
    with peer("host", str(broker.port)) as host:
        await host.event("ready")
        host.send("state scada online")
        await host.event("state")
        first = SparkplugSink(block, config, registry)
        await first.connect()
        await host.wait(lambda: len(host.messages("NBIRTH")) == 1, "the first NBIRTH")
        await first.aclose()
        sink = SparkplugSink(block, config, registry)  # the next process
        await sink.connect()
        await host.wait(lambda: len(host.messages("NBIRTH")) == 2, "the second NBIRTH")
        assert [x["metrics"][0]["value"] for x in host.messages("NBIRTH")] == [0, 1]
        host.send("state scada offline 60000")  # a minute older than the last
        await host.event("state", 2)
        now = time.time_ns()
        await asyncio.wait_for(sink.write(Batch(
            np.array([now], np.int64), np.array([temp], np.int32), np.array([21.5]),
            np.array([0], np.uint8)), []), 10)  # the host is still online: it goes
        await host.wait(lambda: values_by_alias(host, "m1", 1) == [21.5], "m1's DDATA")
        host.send("state scada offline")
        await host.event("state", 3)
        await wait_until(lambda: not sink._online.is_set(), what="the sink to hold its data")
        await sink.aclose()
    assert (tmp_path / "data" / "sparkplug-sparkplug.bdseq").read_text() == "1\n"


# --- the source --------------------------------------------------------------------------


class Collecting:
    """A real sink (the shadow) that also keeps what it was given."""

    def __init__(self, inner: Sink) -> None:
        self._inner = inner
        self.name = inner.name
        self.readings: list[tuple[int, float, int]] = []  # (signal id, value, quality)
        self.events: list[Event] = []

    async def connect(self) -> None:
        await self._inner.connect()

    async def write(self, batch: Batch, events: Sequence[Event]) -> None:
        await self._inner.write(batch, events)
        self.readings += zip(batch.signal_id.tolist(), batch.value.tolist(),
                             batch.quality.tolist(), strict=True)
        self.events += events

    async def aclose(self) -> None:
        await self._inner.aclose()


def host_config(port: int, data_dir: Path) -> OmbreConfig:
    """Machine d1 (temp, parts, state) fed by the edge node g1/n1's device d1; Ombre is
    the primary host application `ombre`."""
    signals = [{"name": "temp"}, {"name": "parts"}, {"name": "state", "type": "string"}]
    return validate_config({
        "data_dir": str(data_dir),
        "sites": [{"id": "site", "lines": [{"id": "l1", "machines": [
            {"id": "d1", "signals": signals, "silence_s": 3600,
             "state": {"type": "table", "signal": "state", "map": {"RUNNING": "APT"}}}]}]}],
        "sources": [{"type": "sparkplug", "name": "edge", "port": port, "group_id": "g1",
                     "client_id": "ombre-host-test", "host_id": "ombre"}],
        "runtime": {"flush_interval_ms": 20, "backoff_initial_s": 0.1, "backoff_max_s": 1},
    })


def retained_state(port: int) -> dict[str, Any]:
    """The retained STATE of the primary host `ombre`, read by a client of its own."""
    got: list[bytes] = []
    arrived = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="state-reader")

    def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        got.append(message.payload)
        arrived.set()

    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe("spBv1.0/STATE/ombre", qos=1)
    client.loop_start()
    try:
        assert arrived.wait(10), "no retained STATE"
    finally:
        client.disconnect()
        client.loop_stop()
    return dict(orjson.loads(got[0]))


def quarantine(data_dir: Path) -> list[str]:
    with sqlite3.connect(data_dir / "gateway.sqlite") as db:
        return [r for (r,) in db.execute("SELECT reason FROM quarantine ORDER BY id")]


async def test_the_source_reads_an_independent_edge_node(broker: Mosquitto,
                                                         tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = host_config(broker.port, data_dir)
    registry = config.registry()
    [shadow] = build_sinks(config, registry)
    assert isinstance(shadow, ShadowSink)
    sink = Collecting(shadow)
    ids = {name: registry.id_of("d1", name) for name in ("temp", "parts")}

    def values(name: str) -> list[float]:
        return [v for sid, v, _ in sink.readings if sid == ids[name]]

    def states() -> list[object]:
        return [e.value for e in sink.events if e.name == "state"]

    with peer("edge", str(broker.port), "g1", "n1", "d1") as edge:
        await edge.event("ready")  # born before Ombre listens: its data comes before birth
        async with running(config, [sink]) as gateway:
            source = gateway.counters.connector("edge", "source")
            await wait_until(lambda: source.health.value == "up", what="the source up")
            online = await asyncio.to_thread(retained_state, broker.port)
            assert online["online"] is True
            # Ombre asks for a rebirth: the data had no birth (sent again until then: its
            # subscription is not observable from here, and QoS 0 before it is lost)
            await edge.resend("data temp=21.5 parts=-3 state=RUNNING", "rebirth", 1)
            # the births carry the values the lost data had
            await wait_until(lambda: 21.5 in values("temp"), what="the birth's temp")
            assert values("parts")[0] == -3.0  # an Int32 in two's complement
            assert states()[0] == "RUNNING"
            await wait_until(lambda: shadow.model is not None
                             and shadow.model.machines["d1"].state.raw == "RUNNING",
                             what="the shadow's state")
            edge.send("data temp=22 parts=5 state=IDLE")
            await wait_until(lambda: 22.0 in values("temp"), what="the data's temp")
            assert values("parts")[-1] == 5.0
            assert states()[-1] == "IDLE"

            edge.send("gap")
            edge.send("data temp=23")
            await edge.event("rebirth", 2)  # asked again, for the gap
            await wait_until(lambda: 23.0 in values("temp"), what="the data after the gap")

            edge.send("ddeath")
            await wait_until(lambda: any(e.name == OFFLINE_EVENT for e in sink.events),
                             what="the DDEATH's offline event")
            assert shadow.model is not None
            assert shadow.model.machines["d1"].silent
            edge.send("data temp=24")
            await edge.event("rebirth", 3)  # data of a dead device: it asks for births
            await wait_until(lambda: not shadow.model.machines["d1"].silent,
                             what="d1 back with its births")

            edge.send("crash")
            await wait_until(lambda: sum(e.name == OFFLINE_EVENT for e in sink.events) == 2,
                             what="the NDEATH's offline event")
            assert shadow.model.machines["d1"].silent
            quarantined = source.quarantined
        offline = await asyncio.to_thread(retained_state, broker.port)
        assert offline == {"online": False, "timestamp": online["timestamp"]}
        reasons = quarantine(data_dir)
        assert len(reasons) == quarantined
        assert all(r.startswith("data before its birth") for r in reasons[:-2])
        assert reasons[-2].startswith("seq ")
        assert "messages were lost" in reasons[-2]
        assert reasons[-1].startswith("data before its birth")
        assert all("rebirth requested" in r for r in reasons)
