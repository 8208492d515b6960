"""The Sparkplug B source: Ombre as a host application consuming other edge nodes.

It is the MQTT source (connectors/mqtt.py: paho's thread, chunks, a persistent
session, acks after the outbox commit) with a decoder of its own:

- NBIRTH and DBIRTH define an edge node's metrics: name, alias and type; their values
  are readings too. Each device feeds a machine (`devices`, or the machine of the same
  id) and each metric a signal of it (its `metrics` map, or the signal of the same name).
- NDATA and DDATA map through those aliases (or names).
- Data before its birth, or a `seq` that does not follow the last one, is recorded (a
  quarantine record, so a counter and a log line) and asks the edge node for a rebirth
  with an NCMD `Node Control/Rebirth`, at most once per REBIRTH_INTERVAL_S until the
  node's next NBIRTH. Data before
  a birth cannot be mapped and stays in the quarantine; data after a gap is kept.
- NDEATH (of the bdSeq of the node's birth) and DDEATH raise an OFFLINE_EVENT for their
  machines: the shadow marks them unknown until data comes again.
- With `host_id`, Ombre is a primary host application: edge nodes that wait for it
  see its STATE online while it is connected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson

from connectors.mqtt import MqttSource
from connectors.reject import Reject
from connectors.sparkplug import (
    BD_SEQ,
    NAMESPACE,
    REBIRTH,
    Topic,
    label,
    metric_value,
    next_seq,
    parse_topic,
    quality_of,
    state_topic,
)
from connectors.sparkplug_b_pb2 import DataType, Payload
from connectors.sparkplug_config import DeviceConfig, SparkplugSourceConfig
from connectors.timestamps import TsLimits, TsWindow
from gateway.config import Plant
from gateway.types import (
    OFFLINE_EVENT,
    Batch,
    Delivery,
    Event,
    Quality,
    QuarantineRecord,
    SignalRegistry,
)

log = logging.getLogger(__name__)

KINDS = ("NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH")
MAX_NODES = 10_000  # edge nodes whose births are kept; the oldest is forgotten beyond
REBIRTH_INTERVAL_S = 5.0  # a node is asked for a rebirth at most this often
HEAD_BYTES = 64
HISTORICAL = int(Quality.HISTORICAL)
BAD = int(Quality.BAD)

Target = tuple[str, int | None, bool]  # (machine, signal id or None: ignored, is a string)


@dataclass(slots=True)
class EdgeNode:
    """What an edge node's births said: its bdSeq, the last seq, its metrics by alias
    and by (device, name), and which devices are born."""

    bd_seq: int | None
    seq: int
    aliases: dict[int, Target] = field(default_factory=dict)
    names: dict[tuple[str | None, str], Target] = field(default_factory=dict)
    devices: dict[str, str | None] = field(default_factory=dict)  # born device -> machine


class SparkplugDecoder:
    """Sparkplug B messages of one source into readings, events and quarantine records
    (connectors/mqtt.py Decoder), keeping every edge node's births. Called from the
    event loop only. `requests` collects the NCMD topics of the rebirths to ask for; the
    source publishes and clears them."""

    def __init__(self, config: SparkplugSourceConfig, plant: Plant,
                 registry: SignalRegistry) -> None:
        self._name = config.name
        self._config = config
        self._registry = registry
        self._strings = {(m.id, s.name) for m in plant.machines() for s in m.signals
                         if s.type == "string"}
        self._machines = {m.id for m in plant.machines()}
        self._maps: dict[tuple[str, str | None], DeviceConfig] = {
            (d.node, d.device): d for d in config.devices}
        self._limits = TsLimits.from_config(plant.runtime.limits)
        self._nodes: dict[tuple[str, str], EdgeNode] = {}
        self._asked: dict[tuple[str, str], float] = {}  # node -> monotonic time of its request
        self.requests: list[str] = []

    def filters(self) -> list[tuple[str, int]]:
        group = self._config.group_id or "+"
        return [(f"{NAMESPACE}/{group}/{kind}/#", self._config.qos) for kind in KINDS]

    def decode(self, topics: Sequence[str], payloads: Sequence[bytes], received_ns: Sequence[int]
               ) -> tuple[Batch, list[Event], list[QuarantineRecord]]:
        window = self._limits.window(time.time_ns())
        out = _Out()
        for topic, payload, rx in zip(topics, payloads, received_ns, strict=True):
            parsed = parse_topic(topic)
            if parsed is None or parsed.kind not in KINDS:
                continue
            ctx = _Context(self._name, topic, payload, rx, window, out)
            message = Payload()
            try:
                message.ParseFromString(payload)
            except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and its C twin
                ctx.reject(f"not a Sparkplug B payload: {exc}")
                continue
            self._message(parsed, message, ctx)
        return out.delivery()

    # -- one message ----------------------------------------------------------------------

    def _message(self, topic: Topic, message: Payload, ctx: _Context) -> None:
        key = (topic.group, topic.node)
        node = self._nodes.get(key)
        if topic.kind == "NBIRTH":
            self._nodes.pop(key, None)
            self._asked.pop(key, None)  # born again: the next gap may ask at once
            if len(self._nodes) >= MAX_NODES:
                del self._nodes[next(iter(self._nodes))]
            self._nodes[key] = node = EdgeNode(_bd_seq(message), message.seq)
            self._define(node, topic, None, message, ctx)
            return
        if topic.kind == "NDEATH":
            if node is not None and node.bd_seq in (None, _bd_seq(message)):
                del self._nodes[key]
                for machine in {self._machine_of(topic.node, None), *node.devices.values()}:
                    ctx.out.offline(machine, ctx.rx, f"{ctx.topic}: the edge node died")
            return
        if node is None or (topic.device is not None and topic.kind != "DBIRTH"
                            and topic.device not in node.devices):
            self._rebirth(topic, ctx, "data before its birth: its metrics are unknown")
            return
        expected = next_seq(node.seq)
        node.seq = message.seq
        if message.seq != expected:
            self._rebirth(topic, ctx, f"seq {message.seq} where {expected} was due: "
                          "messages were lost", keep=True)
        if topic.kind == "DBIRTH":
            assert topic.device is not None  # parse_topic: a D message has a device
            node.devices[topic.device] = self._define(node, topic, topic.device, message, ctx)
        elif topic.kind == "DDEATH":
            assert topic.device is not None
            machine = node.devices.pop(topic.device)
            ctx.out.offline(machine, ctx.rx, f"{ctx.topic}: the device died")
        else:
            self._data(node, topic.device, message, ctx)

    def _define(self, node: EdgeNode, topic: Topic, device: str | None, message: Payload,
                ctx: _Context) -> str | None:
        """Take a birth's metrics (and their values); returns the machine it feeds."""
        machine = self._machine_of(topic.node, device)
        unmapped = []
        for metric in message.metrics:
            if device is None and (metric.name in (BD_SEQ, REBIRTH)
                                   or metric.name.startswith(("Node Control/", "Properties/"))):
                continue
            target = self._target(topic.node, device, machine, metric)
            if target[1] is None:
                unmapped.append(metric.name)
            node.names[(device, metric.name)] = target
            if metric.HasField("alias"):
                node.aliases[metric.alias] = target
            self._reading(target, metric, message, ctx)
        if unmapped:
            ctx.reject(f"{len(unmapped)} metric(s) map to no signal"
                       f"{f' of machine {machine}' if machine else ' (no machine)'}: "
                       f"{', '.join(unmapped[:10])}")
        return machine

    def _data(self, node: EdgeNode, device: str | None, message: Payload, ctx: _Context) -> None:
        for metric in message.metrics:
            target = (node.aliases.get(metric.alias) if metric.HasField("alias") else
                      node.names.get((device, metric.name)))
            if target is None:
                ctx.reject(f"metric {label(metric)} was not in the birth")
            else:
                self._reading(target, metric, message, ctx)

    def _reading(self, target: Target, metric: Payload.Metric, message: Payload,
                 ctx: _Context) -> None:
        machine, sid, string = target
        if sid is None:
            return
        try:
            value = metric_value(metric)
            raw_ts = (metric.timestamp if metric.HasField("timestamp") else
                      message.timestamp if message.HasField("timestamp") else None)
            ts, quality = ctx.window.reading_time(raw_ts, "ms", ctx.rx)
            if isinstance(value, str) and not string:
                raise Reject(f"metric {label(metric)}: expected a number for "
                             f"signal {self._registry.info(sid).signal}, found text")
        except (Reject, ValueError) as exc:
            reason = exc.reason if isinstance(exc, Reject) else f"metric {label(metric)}: {exc}"
            ctx.reject(reason, sid)
            return
        quality |= quality_of(metric)
        if metric.is_historical:
            quality |= HISTORICAL
        if string:
            ctx.out.events.append(Event(ts, machine, self._registry.info(sid).signal, value,
                                        quality))
        else:
            ctx.out.add(ts, sid, np.nan if value is None else float(value),
                        quality | (BAD if value is None else 0))

    def _target(self, node: str, device: str | None, machine: str | None,
                metric: Payload.Metric) -> Target:
        if machine is None:
            return ("", None, False)
        mapping = self._maps.get((node, device))
        signal = mapping.metrics.get(metric.name, metric.name) if mapping else metric.name
        sid = self._registry.id_of(machine, signal)
        return (machine, sid, (machine, signal) in self._strings)

    def _machine_of(self, node: str, device: str | None) -> str | None:
        mapping = self._maps.get((node, device))
        if mapping is not None:
            return mapping.machine
        own = device if device is not None else node
        return own if own in self._machines else None

    def _rebirth(self, topic: Topic, ctx: _Context, why: str, *, keep: bool = False) -> None:
        """Record `why` (the message is kept when `keep`) and ask for a rebirth."""
        ctx.reject(f"{why}; rebirth requested" + (" (its data is kept)" if keep else ""))
        key = (topic.group, topic.node)
        now = time.monotonic()
        if now - self._asked.get(key, -REBIRTH_INTERVAL_S) < REBIRTH_INTERVAL_S:
            return
        self._asked[key] = now
        if len(self._asked) > MAX_NODES:
            del self._asked[next(iter(self._asked))]
        log.warning("sparkplug %s: %s from %s: asking edge node %s/%s for a rebirth",
                    self._name, why, ctx.topic, topic.group, topic.node)
        self.requests.append(str(Topic(topic.group, "NCMD", topic.node)))


def rebirth_request() -> bytes:
    payload = Payload(timestamp=time.time_ns() // 1_000_000)
    payload.metrics.add(name=REBIRTH, datatype=DataType.Boolean, boolean_value=True)
    return payload.SerializeToString()


class SparkplugSource:
    """The MQTT source with the Sparkplug decoder; publishes its rebirth requests and,
    as the primary host `host_id`, its STATE: online once connected and subscribed,
    offline as the will and before a clean close, both of the connection's timestamp
    (Sparkplug 3.0: an edge node ignores a STATE older than the last it saw)."""

    def __init__(self, inner: MqttSource, decoder: SparkplugDecoder,
                 host_id: str | None) -> None:
        self.name = inner.name
        self._inner = inner
        self._decoder = decoder
        self._state = state_topic(host_id) if host_id is not None else None
        self._since_ms = 0

    async def connect(self) -> None:
        if self._state is None:
            await self._inner.connect()
            return
        self._since_ms = time.time_ns() // 1_000_000
        self._inner.set_will(self._state, self._state_payload(online=False))
        await self._inner.connect()  # the subscriptions are sent before what follows
        self._inner.publish(self._state, self._state_payload(online=True), qos=1, retain=True)

    def _state_payload(self, *, online: bool) -> bytes:
        return orjson.dumps({"online": online, "timestamp": self._since_ms})

    async def read(self) -> Delivery:
        delivery = await self._inner.read()
        for topic in self._decoder.requests:
            self._inner.publish(topic, rebirth_request(), qos=0)
        self._decoder.requests.clear()
        return delivery

    async def aclose(self) -> None:
        if self._state is not None:
            self._inner.publish(self._state, self._state_payload(online=False), qos=1,
                                retain=True)
        await self._inner.aclose()


def _bd_seq(message: Payload) -> int | None:
    return next((int(m.long_value) for m in message.metrics if m.name == BD_SEQ), None)


@dataclass(slots=True)
class _Out:
    """What one chunk decodes to."""

    ts: list[int] = field(default_factory=list)
    sid: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    quality: list[int] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    quarantined: list[QuarantineRecord] = field(default_factory=list)

    def add(self, ts: int, sid: int, value: float, quality: int) -> None:
        self.ts.append(ts)
        self.sid.append(sid)
        self.value.append(value)
        self.quality.append(quality)

    def offline(self, machine: str | None, ts: int, why: str) -> None:
        if machine is not None:
            self.events.append(Event(ts, machine, OFFLINE_EVENT, why))

    def delivery(self) -> tuple[Batch, list[Event], list[QuarantineRecord]]:
        batch = Batch(np.array(self.ts, np.int64), np.array(self.sid, np.int32),
                      np.array(self.value, np.float64), np.array(self.quality, np.uint8))
        return batch, self.events, self.quarantined


@dataclass(frozen=True, slots=True)
class _Context:
    """The message being decoded, for records and timestamps."""

    source: str
    topic: str
    payload: bytes
    rx: int
    window: TsWindow
    out: _Out

    def reject(self, reason: str, sid: int | None = None) -> None:
        self.out.quarantined.append(QuarantineRecord(self.rx, self.source, self.topic,
                                                     self.payload[:HEAD_BYTES], reason, sid))
