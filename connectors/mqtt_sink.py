"""MQTT sink: publishes the outbox to a broker as a Unified Namespace, one topic per
signal under its ISA-95 path (`{prefix}/{site}/{area}/{line}/{machine}/{signal}`), and
keeps the shadow's live model there as retained messages.

A write publishes every message of what the runtime hands it and returns once the
broker has acknowledged each (PUBACK for QoS 1, PUBCOMP for QoS 2); the runtime then
moves the outbox cursor. If the link drops first, `write` raises and remembers which
readings were acknowledged: the runtime reconnects and writes the same rows again,
and only those not acknowledged are published, so a broker outage neither loses nor
repeats a reading (a process crash in between may repeat the last write's: QoS 1 is
at least once). Messages go out in outbox order on one link, so the order per signal
holds. A new paho client serves each link: nothing of a dead link is sent again
behind the runtime's back. At most MAX_UNACKED messages of a write wait for their
acknowledgement at once, so a backlog larger than MQTT's 65,535 message ids never
reuses the id of a message still waiting; a message paho does not take ends the link.

Threads: paho's network thread only marks messages published and wakes the loop at
most once per loop iteration; the loop side builds the payloads and publishes from a
worker thread. `publish_model` may be called from any thread (the shadow's); it
publishes only on a link the broker has accepted (paho's client is not safe to publish
on while it connects in another thread)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from connectors.mqtt_client import connect_options, new_client, open_link, settle
from connectors.mqtt_sink_config import MqttSinkConfig
from gateway.config import Plant
from gateway.types import Batch, Event, EventValue, SignalRegistry, Written

log = logging.getLogger(__name__)

PUBLISH_CHUNK = 2_000  # messages handed to paho per worker-thread call
# Messages of a write published and not yet acknowledged, at most. paho numbers the
# messages of a link 1-65535 in turn and refuses one whose number is still waiting for
# its acknowledgement: a write of more than 65,535 messages (a backlog after an outage)
# would reuse the numbers of its own first messages.
MAX_UNACKED = 10_000
MODEL_LEVEL = "_shadow"  # the {signal} level of a machine's live model topics
NO_TS = np.iinfo(np.int64).min

Key = tuple[int, int] | tuple[str, str, int]  # a reading's (signal id, ts) or an event's


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    keys: tuple[Key, ...]  # what it carries, remembered once acknowledged


class Acknowledgements:
    """What a write waits for: the mid of each message it published, in publishing
    order, and which were acknowledged. paho marks a message published only after its
    on_publish returns, so the acknowledged mids are counted here, in order: a mid is
    used again only after its last message was acknowledged (MAX_UNACKED), so an
    acknowledgement goes to the first waiting message with that mid."""

    def __init__(self) -> None:
        self.acked: list[bool] = []
        self.left = 0  # published, not acknowledged
        self._waiting: dict[int, deque[int]] = {}

    def add(self, mids: list[int]) -> None:
        for mid in mids:
            self._waiting.setdefault(mid, deque()).append(len(self.acked))
            self.acked.append(False)
        self.left += len(mids)

    def take(self, mid: int) -> None:
        found = self._waiting.get(mid)
        if found:
            self.acked[found.popleft()] = True
            self.left -= 1


class Filters:
    """Per-signal deadband (-1: none) and minimum interval (MqttSinkConfig.filters) as
    arrays by signal id, with the last reading published of each filtered signal. `select`
    decides without changing that state; `commit` keeps its outcome once the write it
    belongs to is acknowledged, so a retried write decides the same."""

    def __init__(self, config: MqttSinkConfig, registry: SignalRegistry,
                 strings: set[int]) -> None:
        n = len(registry)
        self.deadband = np.zeros(n)
        self.interval_ns = np.zeros(n, np.int64)
        self.active = np.zeros(n, bool)
        for f in config.filters:  # a later filter overrides an earlier one
            for info in registry:
                if (f.signal in (None, info.signal) and f.machine in (None, info.machine)
                        and info.id not in strings):
                    self.deadband[info.id] = -1.0 if f.deadband is None else f.deadband
                    self.interval_ns[info.id] = int(f.min_interval_s * 1e9)
                    self.active[info.id] = True
        self.last_ts = np.full(n, NO_TS, np.int64)
        self.last_value = np.zeros(n)
        self.last_quality = np.zeros(n, np.int16)
        self._pending: dict[int, tuple[int, float, int]] = {}

    def select(self, batch: Batch) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Which rows of `batch` to publish."""
        keep = np.ones(len(batch), bool)
        self._pending = {}
        for i in np.flatnonzero(self.active[batch.signal_id]).tolist():
            sid = int(batch.signal_id[i])
            ts, value, quality = int(batch.ts_ns[i]), float(batch.value[i]), int(batch.quality[i])
            last = self._pending.get(sid)
            if last is None and self.last_ts[sid] != NO_TS:
                last = (int(self.last_ts[sid]), float(self.last_value[sid]),
                        int(self.last_quality[sid]))
            if last is not None and quality == last[2] and (
                    ts - last[0] < self.interval_ns[sid]
                    or abs(value - last[1]) <= self.deadband[sid]):
                keep[i] = False
                continue
            self._pending[sid] = (ts, value, quality)
        return keep

    def commit(self) -> None:
        for sid, (ts, value, quality) in self._pending.items():
            self.last_ts[sid], self.last_value[sid], self.last_quality[sid] = ts, value, quality
        self._pending = {}


def _json_number(value: float) -> str:
    return repr(value) if math.isfinite(value) else "null"


def _json_value(value: EventValue) -> str:
    if isinstance(value, float):
        return _json_number(value)
    return json.dumps(value)


class MqttSink:
    """Publishes readings and events under the plant's ISA-95 topic tree, and the
    shadow's live model (`publish_model`) as retained messages.

    The runtime calls `connect` (again after a failed write), `write` from one task,
    `aclose` once; after `aclose`, `write` raises ConnectionError."""

    def __init__(self, config: MqttSinkConfig, plant: Plant, registry: SignalRegistry) -> None:
        self.name = config.name
        self._config = config
        self._registry = registry
        # Whether the composition root should hand this sink the shadow's live model.
        self.model_interval_s = config.model_interval_s if config.model else None
        where = plant.places()
        self._base: dict[str, dict[str, str]] = {}  # machine -> its placeholders
        for machine, place in where.items():
            self._base[machine] = {"prefix": config.prefix, "site": place.site,
                                   "area": place.area or config.default_area,
                                   "line": place.line, "machine": machine}
        self._topic = [self.topic_of(info.machine, info.signal) for info in registry]
        machines = sorted({info.machine for info in registry})
        index = {m: i for i, m in enumerate(machines)}
        self._machine_topic = [self.topic_of(m, "").removesuffix("/") for m in machines]
        self._signal_machine = np.array([index[info.machine] for info in registry], np.int64)
        strings = {registry.id_of(m.id, s.name) for m in plant.machines() for s in m.signals
                   if s.type == "string"}
        self._filters = Filters(config, registry, {i for i in strings if i is not None})
        self._acked: set[Key] = set()  # of a write that failed: not published again
        self._model: dict[str, bytes] = {}  # topic -> the latest model payload
        self._model_lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self._wake_scheduled = False
        self._done: deque[int] = deque()  # acknowledged mids, appended by paho's thread
        self._lost: str | None = "not connected"

    def topic_of(self, machine: str, signal: str) -> str:
        return self._config.topic.format(**self._base[machine], signal=signal)

    # -- connection -----------------------------------------------------------------

    async def connect(self) -> None:
        cfg = self._config
        await self._stop_client()
        self._loop = asyncio.get_running_loop()
        self._connected = self._loop.create_future()
        client = new_client(cfg, persistent=False)
        client.max_inflight_messages_set(cfg.max_inflight)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client  # usable once the broker accepts it (_on_connect)
        await open_link(client, cfg, self._connected, self._stop_client,
                        **connect_options(cfg, persistent=False))
        with self._model_lock:
            model = list(self._model.items())
        for topic, payload in model:  # a restarted broker may have lost them
            client.publish(topic, payload, min(cfg.qos, 1), retain=True)
        log.info("mqtt sink %s: connected to %s:%d, publishing under %s/", self.name,
                 cfg.host, cfg.port, cfg.prefix)

    async def aclose(self) -> None:
        await self._stop_client()

    async def _stop_client(self) -> None:
        client, self._client = self._client, None
        self._lost = "not connected"
        if client is not None:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)

    # -- writes -----------------------------------------------------------------------

    async def write(self, batch: Batch, events: Sequence[Event]) -> Written:
        keep = self._filters.select(batch)
        messages, valueless = self._messages(batch, keep, events)
        if self._acked:
            messages = [m for m in messages if not all(k in self._acked for k in m.keys)]
        await self._publish(messages)
        self._filters.commit()
        self._acked.clear()
        return Written(valueless=valueless)

    def _messages(self, batch: Batch, keep: np.ndarray[Any, np.dtype[np.bool_]],
                  events: Sequence[Event]) -> tuple[list[Message], int]:
        rows = np.flatnonzero(keep)
        sids = batch.signal_id[rows].tolist()
        ts = batch.ts_ns[rows].tolist()
        values = batch.value[rows].tolist()
        quality = batch.quality[rows].tolist()
        valueless = int(np.count_nonzero(~np.isfinite(batch.value[rows])))
        out: list[Message] = []
        if self._config.batch == "none":
            topic = self._topic
            out = [Message(topic[s], (f'{{"ts":{t // 1_000_000},"value":{_json_number(v)},'
                                      f'"quality":{q}}}').encode(), ((s, t),))
                   for s, t, v, q in zip(sids, ts, values, quality, strict=True)]
        else:
            out = self._machine_messages(sids, ts, values, quality)
        for event in events:
            sid = self._registry.id_of(event.machine, event.name)
            if sid is None:  # the gateway's own facts (outbox overflow): not plant data
                continue
            valueless += event.value is None
            out.append(Message(self._topic[sid], (
                f'{{"ts":{event.ts_ns // 1_000_000},"value":{_json_value(event.value)},'
                f'"quality":{int(event.quality)}}}').encode(),
                ((event.machine, event.name, event.ts_ns),)))
        if events:
            # In time order, readings and events together (a message by its first
            # reading's): a consumer that takes a machine's signals in the order they
            # come (another Ombre's shadow) sees its states where they belong among its
            # counts, however much of a backlog one write holds.
            out.sort(key=lambda m: m.keys[0][-1])
        return out, valueless

    def _machine_messages(self, sids: list[int], ts: list[int], values: list[float],
                          quality: list[int]) -> list[Message]:
        """One message per machine (and max_readings_per_message readings), a JSON
        array of {"signal", "ts", "value", "quality"} in outbox order."""
        groups: dict[int, list[int]] = {}
        machine = self._signal_machine
        for i, s in enumerate(sids):
            groups.setdefault(int(machine[s]), []).append(i)
        names = [info.signal for info in self._registry]
        size = self._config.max_readings_per_message
        out = []
        for m, idx in groups.items():
            for start in range(0, len(idx), size):
                part = idx[start:start + size]
                body = ",".join(f'{{"signal":{json.dumps(names[sids[i]])},'
                                f'"ts":{ts[i] // 1_000_000},"value":{_json_number(values[i])},'
                                f'"quality":{quality[i]}}}' for i in part)
                out.append(Message(self._machine_topic[m], f"[{body}]".encode(),
                                   tuple((sids[i], ts[i]) for i in part)))
        return out

    async def _publish(self, messages: list[Message]) -> None:
        """Publishes `messages` in order and waits for every acknowledgement; raises
        ConnectionError, remembering the acknowledged ones, if the link drops first."""
        client = self._client
        if client is None or self._lost is not None:
            raise ConnectionError(f"sink {self.name}: {self._lost}")
        cfg = self._config
        rate = cfg.max_messages_per_s
        step = PUBLISH_CHUNK if rate is None else max(1, min(PUBLISH_CHUNK, int(rate / 10)))
        self._done.clear()
        acks = Acknowledgements()
        loop = asyncio.get_running_loop()
        for start in range(0, len(messages), step):
            chunk = messages[start:start + step]
            if not await self._until_acknowledged(acks, MAX_UNACKED - len(chunk)):
                break
            began = loop.time()
            acks.add(await asyncio.to_thread(self._send, client, chunk))
            if self._lost is not None:
                break
            if rate is not None:  # the rest waits in the outbox meanwhile
                await asyncio.sleep(max(0.0, len(chunk) / rate - (loop.time() - began)))
        if await self._until_acknowledged(acks, 0) and len(acks.acked) == len(messages):
            return
        self._acked.update(k for m, done in zip(messages, acks.acked, strict=False)
                           if done for k in m.keys)
        raise ConnectionError(f"sink {self.name}: {self._lost}; "
                              f"{len(messages) - sum(acks.acked)} of {len(messages)} messages "
                              "not acknowledged, published again")

    def _send(self, client: mqtt.Client, messages: list[Message]) -> list[int]:
        """Publishes `messages` in order and returns their mids; stops at the first that
        paho does not take (its link is gone), marking the link lost."""
        qos, retain = self._config.qos, self._config.retain
        mids = []
        for m in messages:
            info = client.publish(m.topic, m.payload, qos, retain)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                self._lost = self._lost or f"paho did not take a message: " \
                                           f"{mqtt.error_string(info.rc)}"
                break
            mids.append(info.mid)
        return mids

    async def _until_acknowledged(self, acks: Acknowledgements, at_most: int) -> bool:
        """Waits until at most `at_most` of the messages of `acks` wait for their
        acknowledgement: True, or False once the link is lost first."""
        while True:
            while self._done:
                acks.take(self._done.popleft())
            if acks.left <= at_most:
                return True
            if self._lost is not None:
                return False
            self._wake.clear()
            if not self._done:
                await self._wake.wait()

    # -- the live model -------------------------------------------------------------------

    def publish_model(self, machine: str, parts: Mapping[str, Any]) -> None:
        """Publishes, retained, each part of `machine`'s live model that changed since
        the last call (`{topic of signal "_shadow/<part>"}`: state, job, counts...), and
        again after every reconnection. Any thread; never blocks on the broker."""
        changed = []
        with self._model_lock:
            for part, doc in parts.items():
                topic = self.topic_of(machine, f"{MODEL_LEVEL}/{part}")
                payload = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
                if self._model.get(topic) != payload:
                    self._model[topic] = payload
                    changed.append((topic, payload))
        client = self._client
        if client is not None and self._lost is None:
            for topic, payload in changed:
                client.publish(topic, payload, min(self._config.qos, 1), retain=True)

    # -- the paho thread ----------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any,
                    reason: ReasonCode, properties: Properties | None) -> None:
        error = ConnectionError(f"broker refused the connection: {reason}") \
            if reason.is_failure else None
        if error is None and client is self._client:
            self._lost = None  # before the connect returns, and before a disconnect
        settle(self._loop, self._connected, error)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason: ReasonCode, properties: Properties | None) -> None:
        cfg = self._config
        if client is self._client:
            self._lost = f"lost the connection to {cfg.host}:{cfg.port}: {reason}"
        settle(self._loop, self._connected,
               ConnectionError(f"lost the connection to {cfg.host}:{cfg.port}: {reason}"))
        self._wake_loop()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int,
                    reason: ReasonCode, properties: Properties | None) -> None:
        if client is self._client:
            self._done.append(mid)
        self._wake_loop()

    def _wake_loop(self) -> None:
        if self._wake_scheduled or self._loop is None or self._loop.is_closed():
            return
        self._wake_scheduled = True
        self._loop.call_soon_threadsafe(self._woken)

    def _woken(self) -> None:
        self._wake_scheduled = False
        self._wake.set()
