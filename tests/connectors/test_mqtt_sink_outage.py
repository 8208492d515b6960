"""The MQTT sink through repeated outages of its link, as in the demo's broker-outage
scenario: a TCP relay in front of a real Mosquitto is stopped (connections cut, new
ones refused) and started again, while the shadow's thread publishes the live model
without pause and a busy thread competes for the interpreter. After each outage the
sink must be up again and have delivered every reading within a bound, also when the
backlog of an outage is more messages than MQTT has message ids (65,535)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.mosquitto import Mosquitto
from connectors.mqtt_sink import MqttSink
from connectors.mqtt_sink_config import MqttSinkConfig
from gateway.counters import Health
from gateway.runtime import _waiting_in
from ombre.config import validate_config
from sim.relay import Relay
from tests.conftest import Publisher, running
from tests.connectors.test_mqtt_sink import TS0, Collector, config_with, northbound, until_up

__all__ = ["northbound"]  # the fixture, used by name

OUTAGES_S = (0.3, 1.5, 0.05, 2.5, 0.8)  # each cycle's, to fall in different backoff phases
BULK_CYCLE = 1  # the outage of this cycle leaves a backlog of more than 65,535 messages
BULK_MESSAGES = 18  # per signal, each an array of BULK_READINGS readings
BULK_READINGS = 1_000
SIGNALS = [f"plant/l1/{m}/{s}" for m in ("m1", "m2") for s in ("temp", "speed")]
STALL_S = 30.0  # a bound on a way back that stopped moving, not a speed
MODEL_INTERVAL_S = 0.05  # the shadow's shortest is 0.1 s


def keep_busy(stop: threading.Event) -> None:
    """Competes with the loop and paho's threads for the interpreter (a loaded Pi)
    half of the time."""
    while not stop.is_set():
        sum(range(20_000))
        time.sleep(0.001)


def publish_models(sink: MqttSink, stop: threading.Event) -> None:
    """As the shadow does from its thread: a changed model for each machine every
    MODEL_INTERVAL_S, whatever the state of the link."""
    n = 0
    while not stop.is_set():
        n += 1
        for machine in ("m1", "m2"):
            sink.publish_model(machine, {"state": {"n": n}, "counts": {"produced": n // 3}})
        time.sleep(MODEL_INTERVAL_S)


async def test_the_sink_comes_back_after_each_outage_of_its_link_under_load(
        broker: Mosquitto, northbound: Mosquitto, publisher: Publisher, tmp_path: Path) -> None:
    relay = Relay("127.0.0.1", northbound.port)
    await relay.start()
    config = validate_config(config_with(broker.port, relay.port, tmp_path / "data"))
    sink_config = config.sinks[0]
    assert isinstance(sink_config, MqttSinkConfig)
    sink = MqttSink(sink_config, config, config.registry())
    collector = Collector(northbound.port, "ombre/site/#")
    stop = threading.Event()
    threads = [threading.Thread(target=keep_busy, args=(stop,), name="test:busy"),
               threading.Thread(target=publish_models, args=(sink, stop), name="test:model")]
    sent = bulk = 0

    def delivered() -> int:
        return len({(t, p["ts"]) for t, p, _ in collector.readings() if "/_shadow/" not in t})

    async def feed(count: int) -> None:
        nonlocal sent
        for _ in range(count):
            for topic in SIGNALS:
                publisher.publish(topic, json.dumps({"value": sent, "ts": TS0 + sent}))
            sent += 1
            await asyncio.sleep(0.002)

    def publish_bulk() -> None:
        """Readings for each signal in arrays, timestamped after the fed ones."""
        nonlocal bulk
        base = TS0 + 10_000_000
        for topic in SIGNALS:
            m, s = topic.split("/")[-2:]
            for i in range(BULK_MESSAGES):
                ts = [base + i * BULK_READINGS + k for k in range(BULK_READINGS)]
                publisher.publish(f"batch/{m}/{s}", json.dumps({"ts": ts, "value": ts}))
                bulk += BULK_READINGS

    def expected() -> int:
        return sent * len(SIGNALS) + bulk

    try:
        async with running(config, sinks=[sink]) as gateway:
            await until_up(gateway)
            for thread in threads:
                thread.start()
            uns = gateway.counters.connector("uns", "sink")
            source = gateway.counters.connector("broker", "source")
            for cycle, outage_s in enumerate(OUTAGES_S):
                await feed(40)
                await relay.stop()
                await feed(40)  # readings wait in the outbox meanwhile
                if cycle == BULK_CYCLE:
                    publish_bulk()
                await asyncio.sleep(outage_s)
                await relay.start()
                await feed(20)
                await recovered(lambda: uns.health is Health.UP and delivered() == expected(),
                                lambda: (uns.readings, uns.retries, delivered()),
                                lambda: f"the sink up with all {expected()} readings after "
                                f"outage {cycle + 1} (sink {uns.health.value}: "  # noqa: B023
                                f"{uns.last_error}; {source.readings} received, "
                                f"{uns.readings} written, {delivered()} delivered)")
    finally:
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join()
        collector.close()
        await relay.stop()
    model = {t.rsplit("/", 1)[1]: p for t, p, _, _ in collector.messages
             if "/_shadow/" in t and t.startswith("ombre/site/default/l1/m1/")}
    assert set(model) == {"state", "counts"}


async def recovered(condition: Callable[[], bool], progress: Callable[[], object],
                    what: Callable[[], str]) -> None:
    """Poll `condition`; once `progress` stays the same for STALL_S, fail naming `what`
    and where the sink's task and every thread wait (a bound on a stuck sink, whatever
    the speed of the machine)."""
    last, deadline = progress(), time.monotonic() + STALL_S
    while not condition():
        if (now := progress()) != last:
            last, deadline = now, time.monotonic() + STALL_S
        elif time.monotonic() > deadline:
            tasks = [t for t in asyncio.all_tasks() if t.get_name() == "sink:uns"]
            where = _waiting_in(tasks[0]) if tasks else "nothing (it ended)"
            stacks = "\n".join(f"thread {thread.name}:\n"
                               + "".join(traceback.format_stack(frames[thread.ident]))
                               for thread in threading.enumerate()
                               if thread.ident in (frames := sys._current_frames()))
            pytest.fail(f"no progress for {STALL_S} s waiting for {what()}; the sink's "
                        f"task waits in {where}\n{stacks}")
        await asyncio.sleep(0.1)
