"""The MQTT side of the simulated machines: one paho client that publishes their JSON
with QoS 1 and keeps what it could not yet send (bounded), as a retrofit sensor box
does, and counts every reading it handed to the broker per signal."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sim.machines import Reading

log = logging.getLogger(__name__)

MAX_QUEUED = 200_000  # messages kept while the broker is away; then new ones are refused


class Publisher:
    def __init__(self, host: str, port: int, client_id: str, prefix: str) -> None:
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                   clean_session=False)
        self._client.max_queued_messages_set(MAX_QUEUED)
        self._client.max_inflight_messages_set(100)
        self._client.reconnect_delay_set(1, 5)
        self._client.on_publish = self._on_publish
        self._host, self._port = host, port
        self.prefix = prefix  # the first topic levels, e.g. "ombre-demo/1a2b3c4d"
        self._lock = threading.Lock()
        self._sent = 0
        self._acked = 0
        self.published: Counter[str] = Counter()  # "machine/signal" -> number readings sent
        self.refused = 0  # messages the full queue refused
        self._waiter: threading.Event | None = None

    def start(self) -> None:
        self._client.connect_async(self._host, self._port, keepalive=10)
        self._client.loop_start()

    def stop(self, timeout_s: float = 15.0) -> bool:
        """Waits (at most `timeout_s`) for the broker to acknowledge every message,
        then disconnects; False if some were still unacknowledged."""
        done = threading.Event()
        with self._lock:
            self._waiter = done
            if self._acked >= self._sent:
                done.set()
        acked = done.wait(timeout_s)
        self._client.disconnect()
        self._client.loop_stop()
        return acked

    def readings(self, line: str, machine: str, t_ns: int,
                 values: Mapping[str, Reading]) -> None:
        """One JSON object with every signal of the machine (format object)."""
        self._send(f"{self.prefix}/{line}/{machine}", {"ts": t_ns // 1_000_000, **values},
                   [f"{machine}/{k}" for k, v in values.items() if not isinstance(v, str)])

    def value(self, line: str, machine: str, signal: str, t_ns: int, value: Reading) -> None:
        """One reading of one signal (format value)."""
        self._send(f"{self.prefix}/{line}/{machine}/{signal}",
                   {"value": value, "ts": t_ns // 1_000_000},
                   [] if isinstance(value, str) else [f"{machine}/{signal}"])

    def raw(self, topic: str, payload: bytes) -> bool:
        """A payload as it is (the bad-payloads scenario); True if it was handed over."""
        return self._publish(topic, payload)

    def _send(self, topic: str, doc: dict[str, Any], counted: list[str]) -> None:
        if self._publish(topic, orjson.dumps(doc)):
            self.published.update(counted)

    def _publish(self, topic: str, payload: bytes) -> bool:
        # Not under self._lock: paho calls on_publish holding its own message lock,
        # which publish() takes too.
        info = self._client.publish(topic, payload, qos=1)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            self.refused += 1
            return False
        with self._lock:
            self._sent += 1
        return True

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int,
                    reason: Any, properties: Any) -> None:
        with self._lock:
            self._acked += 1
            if self._waiter is not None and self._acked >= self._sent:
                self._waiter.set()
