"""MQTT source: paho-mqtt 2.x in its own network thread, a persistent session, and
acks only after the runtime has committed the data.

The paho thread only appends (topic, payload, receive time, mid) to a buffer under a
lock; the event loop is woken at most twice per chunk (first message, chunk full),
never once per message. Decoding happens on the loop side, a chunk at a time.
QoS 1/2 messages are acked (`manual_ack`) when the runtime calls the delivery's ack,
after the outbox commit, so a crash before that makes the broker deliver them again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from connectors.mqtt_client import connect_options, new_client, open_link, settle
from connectors.mqtt_config import MqttSubscriberConfig
from gateway.chunks import ChunkTimer
from gateway.config import RuntimeConfig
from gateway.types import Batch, Delivery, Event, QuarantineRecord

log = logging.getLogger(__name__)

BUFFER_CHUNKS = 4  # the paho thread waits when this many full chunks are unread


class Decoder(Protocol):
    """What a source's messages mean (mqtt_decode.PayloadDecoder, sparkplug_source.py):
    the filters to subscribe to, and `decode`, called from the event loop a chunk at a
    time, which turns (topic, payload, receive time in ns) into readings, events and
    quarantine records and never raises on bad input."""

    def filters(self) -> list[tuple[str, int]]: ...

    def decode(self, topics: Sequence[str], payloads: Sequence[bytes], received_ns: Sequence[int]
               ) -> tuple[Batch, list[Event], list[QuarantineRecord]]: ...


class MqttSource:
    """Subscribes to its decoder's filters and yields what the decoder makes of the
    messages (the MQTT source's PayloadDecoder, the Sparkplug B source's decoder).

    `connect` opens a new paho client with the same client id (so the broker resumes
    the session), `read` returns the next chunk and raises ConnectionError once the
    link is lost and the buffer is empty, `aclose` disconnects and joins the thread."""

    def __init__(self, config: MqttSubscriberConfig, name: str, decoder: Decoder,
                 runtime: RuntimeConfig) -> None:
        self.name = name
        self._config = config
        self._decoder = decoder
        self._chunk = runtime.batch_max_messages
        self._chunk_bytes = runtime.batch_max_bytes
        self._lock = threading.Condition(threading.Lock())
        self._topics: list[str] = []
        self._payloads: list[bytes] = []
        self._received: list[int] = []
        self._acks: list[tuple[int, int]] = []
        self._bytes = 0
        self._full_signalled = False
        self._closing = False  # set by aclose: the paho thread stops waiting for room
        self._stopping = threading.Lock()  # one loop_stop at a time
        self._client = self._new_client()  # one client for the source's life: it keeps
        self._generation = 0  # QoS 2 state across links; bumped at every disconnect
        self._connected: asyncio.Future[None] | None = None
        self._subscribe_mid: int | None = None  # the subscription sent on the last CONNACK
        self._first_connect = True
        self._lost: str | None = None
        self._timer = ChunkTimer(runtime.flush_interval_ms / 1000)
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the event-loop side ------------------------------------------------------

    async def connect(self) -> None:
        cfg = self._config
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._loop_stop)  # the last link's thread, if any
        self._connected = self._loop.create_future()
        self._lost = None
        session = connect_options(cfg, persistent=cfg.persistent,
                                  receive_maximum=cfg.receive_maximum)
        await open_link(self._client, cfg, self._connected, self._stop_client, **session)
        log.info("mqtt %s: connected to %s:%d, subscribing to %s", self.name, cfg.host,
                 cfg.port, ", ".join(f for f, _ in self._decoder.filters()))

    async def read(self) -> Delivery:
        while True:
            await self._timer.ready()
            delivery = self._take()
            if delivery is not None:
                return delivery
            if self._lost is not None:
                raise ConnectionError(self._lost)

    def publish(self, topic: str, payload: bytes, qos: int, *, retain: bool = False) -> None:
        """Publish from the event loop without waiting (a Sparkplug B rebirth request, a
        host's STATE); lost with the link if it drops."""
        self._client.publish(topic, payload, qos=qos, retain=retain)

    def set_will(self, topic: str, payload: bytes) -> None:
        """The will (QoS 1, retained) of the next connection: call before `connect`."""
        self._client.will_set(topic, payload, qos=1, retain=True)

    async def aclose(self) -> None:
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        await self._stop_client()

    async def _stop_client(self) -> None:
        self._client.disconnect()
        await asyncio.to_thread(self._loop_stop)

    def _loop_stop(self) -> None:
        """paho's loop_stop, one call at a time: a call left running in its thread by a
        cancelled `connect` raced the stop's own, and paho's second join found no thread
        (AttributeError at shutdown, seen under a stepped clock)."""
        with self._stopping:
            self._client.loop_stop()

    def _take(self) -> Delivery | None:
        with self._lock:
            topics, payloads, received, acks, generation = (
                self._topics, self._payloads, self._received, self._acks, self._generation)
            self._topics, self._payloads, self._received, self._acks = [], [], [], []
            self._bytes = 0
            self._full_signalled = False
            self._timer.reset()
            if self._lost is not None:
                self._timer.wake()  # so the next read reports the loss
            self._lock.notify_all()
        if not topics:
            return None
        batch, events, quarantined = self._decoder.decode(topics, payloads, received)
        return Delivery(batch, events, quarantined, self._acker(acks, generation))

    def _acker(self, acks: list[tuple[int, int]],
               generation: int) -> list[Callable[[], None]]:
        if not acks:
            return []
        client = self._client

        def ack() -> None:
            # After a disconnect the broker sends unacked messages again, possibly under
            # packet ids reused since: acks from an older link must not reach a newer one.
            # Acks queued just before a disconnect are discarded by paho on reconnect.
            for mid, qos in acks:
                if generation != self._generation:
                    return
                client.ack(mid, qos)

        return [ack]

    def _new_client(self) -> mqtt.Client:
        client = new_client(self._config, persistent=self._config.persistent, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.max_inflight_messages_set(self._config.receive_maximum)
        return client

    # -- the paho thread ------------------------------------------------------------

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason: ReasonCode, properties: Properties | None) -> None:
        cfg = self._config
        with self._lock:
            self._generation += 1
            self._acks = []  # the broker sends these messages again on the next link
            self._lost = f"lost the connection to {cfg.host}:{cfg.port}: {reason}"
            self._lock.notify_all()
        if self._connected is not None:
            settle(self._loop, self._connected, ConnectionError(self._lost))
        self._call(self._timer.wake)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any,
                    reason: ReasonCode, properties: Properties | None) -> None:
        connected = self._connected
        assert connected is not None  # set before the thread starts
        if reason.is_failure:
            settle(self._loop, connected,
                   ConnectionError(f"broker refused the connection: {reason}"))
            client.disconnect()
            return
        if not flags.session_present and not self._first_connect:
            log.warning("mqtt %s: the broker did not keep the session; QoS 1/2 messages "
                        "published while Ombre was away may be lost", self.name)
        self._first_connect = False
        filters = self._decoder.filters()  # MQTT 3.1.1 has no subscription options
        options: list[tuple[str, Any]] = filters if self._config.protocol == "3.1.1" else [
            (f, SubscribeOptions(qos=qos)) for f, qos in filters]
        _, self._subscribe_mid = client.subscribe(options)
        # The source is up (the runtime says so) once the broker delivers to it. A resumed
        # session has its subscriptions already, and its backlog may come before the
        # SUBACK, for `read` to take: now. A new one receives nothing before its SUBACK.
        if flags.session_present:
            settle(self._loop, connected, None)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reasons: list[ReasonCode], properties: Properties | None) -> None:
        refused = [f for (f, _), r in zip(self._decoder.filters(), reasons, strict=False)
                   if r.is_failure]
        if refused:
            log.error("mqtt %s: the broker refused the subscriptions %s", self.name, refused)
            client.disconnect()  # read() then raises, and the runtime retries with backoff
        elif mid == self._subscribe_mid:
            settle(self._loop, self._connected, None)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.time_ns()
        payload = cast(bytes, message.payload)
        with self._lock:
            generation = self._generation
            while self._over(BUFFER_CHUNKS) and generation == self._generation:
                if self._closing:
                    return  # not taken, not acked: the broker sends it again
                self._lock.wait(1.0)  # block the source: the broker keeps the rest
            self._topics.append(message.topic)
            self._payloads.append(payload)
            self._received.append(now)
            if message.qos:
                self._acks.append((message.mid, message.qos))
            first = len(self._topics) == 1
            self._bytes += len(payload)
            full = not self._full_signalled and self._over(1)
            self._full_signalled |= full
        if first:
            self._call(self._timer.started)
        if full:
            self._call(self._timer.filled)

    def _over(self, chunks: int) -> bool:
        return (len(self._topics) >= chunks * self._chunk
                or self._bytes >= chunks * self._chunk_bytes)

    def _call(self, callback: Callable[[], None]) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback)
