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
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from connectors.mqtt_config import MqttSourceConfig
from connectors.mqtt_decode import PayloadDecoder
from gateway.chunks import ChunkTimer
from gateway.config import Plant, RuntimeConfig
from gateway.types import Delivery, SignalRegistry

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
BUFFER_CHUNKS = 4  # the paho thread waits when this many full chunks are unread


def watch_link(sock: object, keepalive_s: int) -> None:
    """Make the kernel abort a link that stopped answering within 3/4 of its keep-alive.

    paho alone notices a silent broker only two keep-alives after its last packet (one
    keep-alive to send PINGREQ, one more to give up), so a partition (packets dropped,
    nothing refused) would go unseen for that long. TCP keep-alive probes an idle link
    after half a keep-alive, and the user timeout aborts a link whose probes or data
    stay unacknowledged that long: the kernel answers for a live broker host, so this
    costs no MQTT traffic. A frozen broker behind a live kernel is still paho's to see."""
    if not isinstance(sock, socket.socket):  # not connected, or a websocket wrapper
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, keepalive_s // 2))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, keepalive_s // 4))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, keepalive_s * 750)


class MqttSource:
    """Subscribes to the configured topic templates and yields decoded deliveries.

    `connect` opens a new paho client with the same client id (so the broker resumes
    the session), `read` returns the next chunk and raises ConnectionError once the
    link is lost and the buffer is empty, `aclose` disconnects and joins the thread."""

    def __init__(self, config: MqttSourceConfig, plant: Plant, registry: SignalRegistry,
                 runtime: RuntimeConfig) -> None:
        self.name = config.name
        self._config = config
        self._decoder = PayloadDecoder(config.name, config.subscriptions, plant, registry)
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
        self._client = self._new_client()  # one client for the source's life: it keeps
        self._generation = 0  # QoS 2 state across links; bumped at every disconnect
        self._connected: asyncio.Future[None] | None = None
        self._first_connect = True
        self._lost: str | None = None
        self._timer = ChunkTimer(runtime.flush_interval_ms / 1000)
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the event-loop side ------------------------------------------------------

    async def connect(self) -> None:
        cfg = self._config
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._client.loop_stop)  # the last link's thread, if any
        self._connected = self._loop.create_future()
        self._lost = None
        session: dict[str, Any] = {}
        if cfg.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = cfg.session_expiry_s
            properties.ReceiveMaximum = cfg.receive_maximum
            session = {"clean_start": False, "properties": properties}
        try:
            await asyncio.to_thread(self._client.connect, cfg.host, cfg.port, cfg.keepalive_s,
                                    **session)
        except (OSError, ValueError) as exc:
            raise ConnectionError(f"cannot connect to {cfg.host}:{cfg.port}: {exc}") from None
        watch_link(self._client.socket(), cfg.keepalive_s)
        # paho's loop_start opens a new wake-up socket pair without closing the last
        # link's one (paho-mqtt 2.2); close it here, the last thread has been joined.
        self._client._reset_sockets(sockpair_only=True)
        self._client.loop_start()  # paho's own thread: acks from the loop are only queued
        try:
            await asyncio.wait_for(self._connected, CONNECT_TIMEOUT_S)
        except TimeoutError:
            await self._stop_client()
            raise ConnectionError(f"no answer from {cfg.host}:{cfg.port} "
                                  f"within {CONNECT_TIMEOUT_S:.0f} s") from None
        except ConnectionError:
            await self._stop_client()
            raise
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

    async def aclose(self) -> None:
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        await self._stop_client()

    async def _stop_client(self) -> None:
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)

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
        cfg = self._config
        v5 = cfg.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=cfg.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else False, reconnect_on_failure=False, manual_ack=True,
        )
        if cfg.username is not None:
            password = cfg.password.get_secret_value() if cfg.password else None
            client.username_pw_set(cfg.username, password)
        if cfg.tls is not None:
            client.tls_set(
                ca_certs=str(cfg.tls.ca_file) if cfg.tls.ca_file else None,
                certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
                keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
                cert_reqs=ssl.CERT_NONE if cfg.tls.insecure_skip_verify else ssl.CERT_REQUIRED,
            )
            client.tls_insecure_set(cfg.tls.insecure_skip_verify)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.max_inflight_messages_set(cfg.receive_maximum)
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
            self._signal(self._connected, ConnectionError(self._lost))
        self._call(self._timer.wake)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any,
                    reason: ReasonCode, properties: Properties | None) -> None:
        connected = self._connected
        assert connected is not None  # set before the thread starts
        if reason.is_failure:
            self._signal(connected, ConnectionError(f"broker refused the connection: {reason}"))
            client.disconnect()
            return
        if not flags.session_present and not self._first_connect:
            log.warning("mqtt %s: the broker did not keep the session; QoS 1/2 messages "
                        "published while Ombre was away may be lost", self.name)
        self._first_connect = False
        options = [(f, SubscribeOptions(qos=qos)) for f, qos in self._decoder.filters()]
        client.subscribe(options)
        # Resolved now, not on SUBACK: a resumed session's backlog may arrive first,
        # and `read` must be running to take it.
        self._signal(connected, None)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reasons: list[ReasonCode], properties: Properties | None) -> None:
        refused = [f for (f, _), r in zip(self._decoder.filters(), reasons, strict=False)
                   if r.is_failure]
        if refused:
            log.error("mqtt %s: the broker refused the subscriptions %s", self.name, refused)
            client.disconnect()  # read() then raises, and the runtime retries with backoff

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

    def _signal(self, future: asyncio.Future[None], error: Exception | None) -> None:
        def settle() -> None:
            if future.done():
                return
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(settle)
