"""The Sparkplug B sink: Ombre as an edge node, each machine of the plant one device.

- `connect` opens an MQTT link whose will is the NDEATH with this link's bdSeq (0-255,
  one more at every new link, across restarts: `<data_dir>/sparkplug-<name>.bdseq`;
  an attempt that makes no link does not count), subscribes to its NCMD and, with a
  primary host, to that host's STATE; it publishes NBIRTH and a DBIRTH per machine
  (every signal with its alias and last value) once the host is online, at once
  without one. A STATE older than the newest one taken is ignored (Sparkplug 3.0).
- `write` publishes one DDATA per machine (at most `max_metrics` metrics each, by
  alias) and returns once the broker acknowledged every message (QoS 1), so the outbox
  keeps the data until then: a broker outage or a host offline loses nothing, it waits.
- An NCMD `Node Control/Rebirth` (by name or alias) publishes the births again; a host
  coming online does too. A machine without data for `silence_s` gets a DDEATH (so does
  one a source reports offline), and a DBIRTH before its next DDATA.
- `aclose` publishes the NDEATH itself before disconnecting: a clean disconnect does not
  send the will.

Everything but the paho callbacks runs in the event loop; paho's thread only hands
STATE and NCMD over with `call_soon_threadsafe`. seq counts every message but NDEATH.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from connectors.mqtt_client import (
    CONNECT_TIMEOUT_S,
    connect_options,
    new_client,
    open_link,
    settle,
)
from connectors.sparkplug import (
    BD_SEQ,
    REBIRTH,
    SEQ_MODULO,
    Topic,
    Value,
    host_state,
    next_seq,
    parse_topic,
    set_quality,
    set_value,
    state_topic,
)
from connectors.sparkplug_b_pb2 import DataType, Payload
from connectors.sparkplug_config import SparkplugSinkConfig
from gateway.config import Plant
from gateway.types import OFFLINE_EVENT, Batch, Event, Quality, SignalRegistry

log = logging.getLogger(__name__)

SILENCE_CHECK_S = 1.0
ACK_POLL_S = 0.2  # how often a wait for acknowledgements looks whether the link is lost
HISTORICAL = int(Quality.HISTORICAL)


class SparkplugSink:
    """The runtime calls `connect` (again after a failed write: a link still up is kept),
    `write` from one task and `aclose` once, all in the event loop."""

    def __init__(self, config: SparkplugSinkConfig, plant: Plant,
                 registry: SignalRegistry) -> None:
        self.name = config.name
        self._config = config
        self._registry = registry
        strings = {(m.id, s.name) for m in plant.machines() for s in m.signals
                   if s.type == "string"}
        self._string = [(i.machine, i.signal) in strings for i in registry]
        self._devices: dict[str, list[int]] = {}
        for info in registry:
            self._devices.setdefault(info.machine, []).append(info.id)
        self._rebirth_alias = len(registry) + 1  # signal aliases are id + 1
        self._last: dict[int, tuple[int, Value]] = {}  # signal id -> (ts_ns, value)
        # The last link's bdSeq, kept across restarts: a new process's first NBIRTH must
        # not reuse the bdSeq of the NDEATH its predecessor's will may still send.
        self._bd_seq_file = plant.data_dir / f"sparkplug-{config.name}.bdseq"
        self._bd_seq = _read_bd_seq(self._bd_seq_file)
        self._seq = 0
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._linked: asyncio.Future[None] | None = None
        self._lost: str | None = None
        self._online = asyncio.Event()  # births sent: DDATA may go
        self._state_ms: int | None = None  # the timestamp of the newest STATE taken
        self._born: set[str] = set()
        self._heard: dict[str, float] = {}  # machine -> monotonic time of its last data
        self._tick: asyncio.TimerHandle | None = None

    # -- the runtime's calls ------------------------------------------------------------

    async def connect(self) -> None:
        if self._client is not None and self._lost is None:
            return  # a write failed while the link stayed up (the host offline): keep it
        await self._drop_client()
        cfg = self._config
        self._loop = asyncio.get_running_loop()
        self._online.clear()
        previous, self._bd_seq = self._bd_seq, next_seq(self._bd_seq)
        try:
            await self._link()
        except ConnectionError:
            self._bd_seq = previous  # no link came of it: the next attempt reuses its bdSeq
            raise
        await asyncio.to_thread(_write_bd_seq, self._bd_seq_file, self._bd_seq)
        log.info("sparkplug %s: edge node %s/%s connected to %s:%d (bdSeq %d)", self.name,
                 cfg.group_id, cfg.edge_node_id, cfg.host, cfg.port, self._bd_seq)
        if cfg.primary_host_id is None:
            self._birth()
        else:
            log.info("sparkplug %s: waiting for primary host %s to be online", self.name,
                     cfg.primary_host_id)
        self._tick = self._loop.call_later(SILENCE_CHECK_S, self._check_silence)

    async def _link(self) -> None:
        cfg = self._config
        assert self._loop is not None
        self._lost = None
        self._linked = self._loop.create_future()
        self._client = client = self._new_client()
        await open_link(client, cfg, self._linked, self._drop_client,
                        **connect_options(cfg, persistent=False))

    async def write(self, batch: Batch, events: Sequence[Event]) -> None:
        if self._client is None or self._lost is not None:
            raise ConnectionError(self._lost or f"sink {self.name} is not connected")
        if not self._online.is_set():
            try:
                await asyncio.wait_for(self._online.wait(), self._config.keepalive_s)
            except TimeoutError:
                raise ConnectionError(f"primary host {self._config.primary_host_id} is not "
                                      "online: data waits in the outbox") from None
        sent = self._publish_data(batch, events)
        await asyncio.to_thread(self._wait_acked, sent)

    async def aclose(self) -> None:
        client = self._client
        if client is not None and self._lost is None:
            death = client.publish(str(self._topic("NDEATH")), self._death(), qos=1)
            await asyncio.to_thread(death.wait_for_publish, CONNECT_TIMEOUT_S / 2)
        await self._drop_client()

    # -- births, data and deaths (event loop) ---------------------------------------------

    def _birth(self) -> None:
        """NBIRTH (seq 0) and a DBIRTH per machine, then data may go."""
        node = Payload()
        node.metrics.add(name=BD_SEQ, datatype=DataType.UInt64, long_value=self._bd_seq)
        node.metrics.add(name=REBIRTH, alias=self._rebirth_alias, datatype=DataType.Boolean,
                         boolean_value=False)
        self._send("NBIRTH", None, node)
        self._born.clear()
        for machine in self._devices:
            self._device_birth(machine)
        self._online.set()
        log.info("sparkplug %s: published NBIRTH and %d DBIRTH (bdSeq %d)", self.name,
                 len(self._devices), self._bd_seq)

    def _device_birth(self, machine: str) -> None:
        payload = Payload()
        now_ms = time.time_ns() // 1_000_000
        for sid in self._devices[machine]:
            ts_ns, value = self._last.get(sid, (None, None))
            metric = payload.metrics.add(name=self._registry.info(sid).signal, alias=sid + 1,
                                         timestamp=now_ms if ts_ns is None else ts_ns // 1_000_000)
            metric.datatype = DataType.String if self._string[sid] else DataType.Double
            set_value(metric, value)
        self._send("DBIRTH", machine, payload)
        self._born.add(machine)
        self._heard[machine] = time.monotonic()

    def _device_death(self, machine: str) -> None:
        if machine in self._born and self._online.is_set():
            self._send("DDEATH", machine, Payload())
            self._born.discard(machine)
            log.info("sparkplug %s: DDEATH for %s", self.name, machine)

    def _publish_data(self, batch: Batch, events: Sequence[Event]) -> list[mqtt.MQTTMessageInfo]:
        """One DDATA per machine (or more, of at most max_metrics each); a machine that is
        not born gets its DBIRTH first, and one a source reported offline its DDEATH."""
        payloads: dict[str, list[Payload]] = {}

        def metric_of(machine: str) -> Payload.Metric:
            chunks = payloads.setdefault(machine, [])
            if not chunks or len(chunks[-1].metrics) >= self._config.max_metrics:
                chunks.append(Payload())
            return chunks[-1].metrics.add()

        for sid, ts, value, quality in zip(batch.signal_id.tolist(), batch.ts_ns.tolist(),
                                           batch.value.tolist(), batch.quality.tolist(),
                                           strict=True):
            self._add(metric_of(self._registry.info(sid).machine), sid, ts, value, quality)
        offline = []
        for event in events:
            sid = self._registry.id_of(event.machine, event.name)
            if sid is not None:
                value = event.value if isinstance(event.value, str | None) else str(event.value)
                self._add(metric_of(event.machine), sid, event.ts_ns, value, event.quality)
            elif event.name == OFFLINE_EVENT and event.machine in self._devices:
                offline.append(event.machine)
        sent = []
        now = time.monotonic()
        for machine, chunks in payloads.items():
            if machine not in self._born:
                self._device_birth(machine)
            self._heard[machine] = now
            sent += [self._send("DDATA", machine, payload) for payload in chunks]
        for machine in offline:
            self._device_death(machine)
        return sent

    def _add(self, metric: Payload.Metric, sid: int, ts_ns: int, value: float | str | None,
             quality: int) -> None:
        metric.alias = sid + 1
        metric.timestamp = ts_ns // 1_000_000
        metric.datatype = DataType.String if self._string[sid] else DataType.Double
        set_value(metric, value)
        set_quality(metric, quality)
        if quality & HISTORICAL:
            metric.is_historical = True
        last = self._last.get(sid)
        if last is None or last[0] <= ts_ns:
            self._last[sid] = (ts_ns, value)

    def _send(self, kind: str, device: str | None, payload: Payload) -> mqtt.MQTTMessageInfo:
        assert self._client is not None  # connected before anything is sent
        self._seq = 0 if kind == "NBIRTH" else next_seq(self._seq)
        payload.seq = self._seq
        payload.timestamp = time.time_ns() // 1_000_000
        return self._client.publish(str(self._topic(kind, device)), payload.SerializeToString(),
                                    qos=self._config.qos)

    def _death(self) -> bytes:
        payload = Payload(timestamp=time.time_ns() // 1_000_000)
        payload.metrics.add(name=BD_SEQ, datatype=DataType.UInt64, long_value=self._bd_seq)
        return payload.SerializeToString()

    def _topic(self, kind: str, device: str | None = None) -> Topic:
        return Topic(self._config.group_id, kind, self._config.edge_node_id, device)

    def _check_silence(self) -> None:
        assert self._loop is not None
        if self._online.is_set():
            deadline = time.monotonic() - self._config.silence_s
            for machine in [m for m in self._born if self._heard.get(m, 0) < deadline]:
                self._device_death(machine)
        self._tick = self._loop.call_later(SILENCE_CHECK_S, self._check_silence)

    def _host_state(self, online: bool, ts_ms: int | None) -> None:
        """The primary host's STATE; one older than the newest taken (a retained one
        delivered late, a host's clock gone back) is ignored, as Sparkplug 3.0 asks."""
        if ts_ms is not None:
            if self._state_ms is not None and ts_ms < self._state_ms:
                log.info("sparkplug %s: ignored a STATE of %s older than the last one "
                         "(%d < %d ms)", self.name, self._config.primary_host_id, ts_ms,
                         self._state_ms)
                return
            self._state_ms = ts_ms
        if online and not self._online.is_set() and self._lost is None:
            log.info("sparkplug %s: primary host %s is online", self.name,
                     self._config.primary_host_id)
            self._birth()
        elif not online and self._online.is_set():
            log.warning("sparkplug %s: primary host %s is offline: data waits in the outbox",
                        self.name, self._config.primary_host_id)
            self._online.clear()

    def _rebirth(self) -> None:
        if self._online.is_set() and self._lost is None:
            log.info("sparkplug %s: rebirth requested", self.name)
            self._birth()

    def _wait_acked(self, sent: list[mqtt.MQTTMessageInfo]) -> None:
        """In a worker thread: return once the broker acknowledged every message."""
        try:
            for info in sent:
                while not info.is_published():
                    if self._lost is not None:
                        raise ConnectionError(self._lost)
                    info.wait_for_publish(ACK_POLL_S)
        except (RuntimeError, ValueError) as exc:  # paho: not sent (no link, queue full)
            raise ConnectionError(f"cannot publish: {exc}") from None

    # -- the link ---------------------------------------------------------------------------

    def _new_client(self) -> mqtt.Client:
        client = new_client(self._config, persistent=False)
        client.will_set(str(self._topic("NDEATH")), self._death(), qos=1, retain=False)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    async def _drop_client(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)

    def _call(self, callback: Any, *args: object) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback, *args)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any,
                    reason: ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            settle(self._loop, self._linked,
                   ConnectionError(f"broker refused the connection: {reason}"))
            client.disconnect()
            return
        filters = [(str(self._topic("NCMD")), 1)]
        if self._config.primary_host_id is not None:
            filters.append((state_topic(self._config.primary_host_id), 1))
        client.subscribe(filters)
        settle(self._loop, self._linked, None)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason: ReasonCode, properties: Properties | None) -> None:
        cfg = self._config
        self._lost = f"lost the connection to {cfg.host}:{cfg.port}: {reason}"
        settle(self._loop, self._linked, ConnectionError(self._lost))

    def _on_message(self, client: mqtt.Client, userdata: Any,
                    message: mqtt.MQTTMessage) -> None:
        payload = bytes(message.payload)
        if parse_topic(message.topic) is None:  # STATE
            state = host_state(payload)
            if state is None:
                log.warning("sparkplug %s: unreadable STATE on %s: %r", self.name,
                            message.topic, payload[:64])
            else:
                self._call(self._host_state, *state)
            return
        command = Payload()
        try:
            command.ParseFromString(payload)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError and its C twin
            log.warning("sparkplug %s: unreadable NCMD (%d bytes)", self.name, len(payload))
            return
        if any((m.name == REBIRTH or (not m.name and m.alias == self._rebirth_alias))
               and m.boolean_value for m in command.metrics):
            self._call(self._rebirth)


def _read_bd_seq(path: Path) -> int:
    """The bdSeq a previous process used last; -1 (the first link uses 0) without one."""
    try:
        found = int(path.read_text())
    except FileNotFoundError:
        return -1
    except (OSError, ValueError) as exc:
        log.warning("sparkplug: %s is unreadable (%s): bdSeq starts again at 0", path, exc)
        return -1
    return found if 0 <= found < SEQ_MODULO else -1


def _write_bd_seq(path: Path, bd_seq: int) -> None:
    """Keeps this link's bdSeq for the next process; a failure is logged, not raised
    (the link works without it)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".tmp").write_text(f"{bd_seq}\n")
        path.with_suffix(".tmp").replace(path)
    except OSError as exc:
        log.warning("sparkplug: could not keep bdSeq %d in %s: %s", bd_seq, path, exc)
