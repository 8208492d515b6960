"""Closing an MQTT source whose paho thread waits for buffer room (the runtime behind it
is held back: a full disk, a stalled outbox, a slow sink) ends at once and loses nothing:
what the thread had not taken is not acked, so the broker sends it again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from bench.mosquitto import Mosquitto
from connectors.mqtt import BUFFER_CHUNKS, MqttSource
from connectors.mqtt_config import MqttSourceConfig
from connectors.mqtt_decode import PayloadDecoder
from gateway.config import Plant
from gateway.types import Delivery
from tests.conftest import Publisher, plant_config, wait_until

TOPIC = "plant/l1/m1/temp"
CHUNK = 10  # messages per delivery: the thread is held back after BUFFER_CHUNKS of them
TOTAL = 200


async def test_closing_a_held_back_source_ends_and_the_broker_sends_the_rest_again(
        broker: Mosquitto, publisher: Publisher, tmp_path: Path) -> None:
    config = plant_config(broker.port, tmp_path / "data", batch_max_messages=CHUNK)
    source_config = config.sources[0]
    assert isinstance(source_config, MqttSourceConfig)
    source = new_source(source_config, config)
    await source.connect()
    await subscribed(source, publisher)
    base = time.time_ns() // 1_000_000 - 60_000
    infos = [publisher.publish(TOPIC, orjson.dumps({"value": i, "ts": base + i}))
             for i in range(TOTAL)]
    for info in infos:
        await asyncio.to_thread(info.wait_for_publish, 10)
    first = await source.read()
    for ack in first.acks:  # as the runtime does once the outbox has committed it
        ack()
    received = values(first)
    await wait_until(lambda: source._over(BUFFER_CHUNKS), what="the paho thread to wait")

    await asyncio.wait_for(source.aclose(), 10)

    again = new_source(source_config, config)  # same client id
    await again.connect()
    try:
        while not received >= set(range(TOTAL)):
            delivery = await asyncio.wait_for(again.read(), 10)
            for ack in delivery.acks:
                ack()
            received |= values(delivery)
    finally:
        await again.aclose()
    assert received == set(range(TOTAL))


async def subscribed(source: MqttSource, publisher: Publisher) -> None:
    """Publish a probe (value -1) until the source gets it: the broker then has its
    subscription (`connect` returns before the SUBACK)."""
    for _ in range(100):
        publisher.publish(TOPIC, b'{"value": -1}')
        try:
            delivery = await asyncio.wait_for(source.read(), 0.2)
        except TimeoutError:
            continue
        for ack in delivery.acks:
            ack()
        return
    pytest.fail("the source never received the probe")


def values(delivery: Delivery) -> set[int]:
    """The numbered readings of `delivery`, without probes."""
    return {v for v in delivery.batch.value.astype(int).tolist() if v >= 0}


def new_source(source_config: MqttSourceConfig, config: Plant) -> MqttSource:
    decoder = PayloadDecoder(source_config.name, source_config.subscriptions, config,
                             config.registry())
    return MqttSource(source_config, source_config.name, decoder, config.runtime)
