"""MQTT payloads to columnar readings, events and quarantine records.

Pure code on the hot path: no I/O, no threads, no logging. The MQTT source calls
`PayloadDecoder.decode` once per chunk of received messages; a bad payload, topic,
value or timestamp becomes a QuarantineRecord and the rest of the chunk is kept.

This module holds the decoder and its four payload formats. It builds on `topics`
(topic to signal), `payload_limits` (size and depth before parsing), `payload_values`
and `timestamps` (one value or timestamp each, raising `reject.Reject`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from connectors.mqtt_config import SubscriptionConfig
from connectors.payload_limits import load_json, size_reason
from connectors.payload_values import bare_number, event_value, number_column, number_value
from connectors.reject import Reject, describe
from connectors.timestamps import TsLimits, TsWindow
from connectors.topics import Route, SignalRef, TopicRouter
from gateway.config import Plant
from gateway.types import (
    Batch,
    Event,
    Float64Array,
    Int64Array,
    Quality,
    QuarantineRecord,
    SignalRegistry,
)

HEAD_BYTES = 256  # how much of a quarantined payload is kept
_MISSING: Any = object()
ALL_QUALITY = sum(int(q) for q in Quality)  # every flag set: the largest quality there is


class _Chunk:
    """What one `decode` call produces, in arrival order, and the message at hand
    (`topic`, `payload`, `rx`, set by `decode` for `reject`).
    Timestamps and values gather in arrays (one per array message, one per run of single
    readings); signal ids and qualities as runs, expanded once by `batch`."""

    __slots__ = ("_n", "_q", "_sid", "_ts", "_ts_parts", "_val", "_val_parts", "events",
                 "payload", "quarantined", "rx", "source", "topic", "window")

    def __init__(self, source: str, window: TsWindow) -> None:
        self.source, self.window = source, window
        self.topic, self.payload, self.rx = "", b"", 0
        self.events: list[Event] = []
        self.quarantined: list[QuarantineRecord] = []
        self._ts_parts: list[Int64Array] = []
        self._val_parts: list[Float64Array] = []
        self._ts: list[int] = []  # single readings not yet in _ts_parts
        self._val: list[float] = []
        self._sid: list[int] = []  # runs: signal id, quality and length
        self._q: list[int] = []
        self._n: list[int] = []

    def reading(self, ts_ns: int, signal_id: int, value: float, quality: int) -> None:
        self._ts.append(ts_ns)
        self._val.append(value)
        self._sid.append(signal_id)
        self._q.append(quality)
        self._n.append(1)

    def column(self, ts_ns: Int64Array, signal_id: int, values: Float64Array,
               quality: int) -> None:
        self._flush()
        self._ts_parts.append(ts_ns)
        self._val_parts.append(values)
        self._sid.append(signal_id)
        self._q.append(quality)
        self._n.append(len(values))

    def store(self, signal: SignalRef, ts_ns: int, raw: object, quality: int) -> None:
        """One value of `signal`: a reading, or an event for a string signal."""
        if signal.is_string:
            self.events.append(Event(ts_ns, signal.machine, signal.name, event_value(raw),
                                     quality))
        else:
            self.reading(ts_ns, signal.id, number_value(raw), quality)

    def reject(self, reason: str, signal_id: int | None = None) -> None:
        self.quarantined.append(QuarantineRecord(self.rx, self.source, self.topic,
                                                 self.payload[:HEAD_BYTES], reason, signal_id))

    def batch(self) -> Batch:
        self._flush()
        if not self._ts_parts:
            return Batch.empty()
        return Batch(_concat(self._ts_parts), np.repeat(np.array(self._sid, np.int32), self._n),
                     _concat(self._val_parts), np.repeat(np.array(self._q, np.uint8), self._n))

    def _flush(self) -> None:
        if self._ts:
            self._ts_parts.append(np.array(self._ts, np.int64))
            self._val_parts.append(np.array(self._val, np.float64))
            self._ts, self._val = [], []


def _concat(parts: list[Any]) -> Any:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


_Format = Callable[[Route, bytes, int, _Chunk], None]


class PayloadDecoder:
    """Turns chunks of MQTT messages of one source into a Batch, events and quarantine
    records, following the source's subscription templates and payload formats.

    Built once per source at start-up; raises ValueError if a template does not fit the
    plant. `decode` is called from one thread at a time (the event loop): it keeps a
    topic cache and is not thread-safe. It never raises on bad topics or payloads."""

    def __init__(self, source: str, subscriptions: Sequence[SubscriptionConfig],
                 config: Plant, registry: SignalRegistry, *,
                 now_ns: Callable[[], int] = time.time_ns, cache_size: int = 50_000) -> None:
        self.source = source
        self._router = TopicRouter(subscriptions, config, registry, cache_size=cache_size)
        limits = config.runtime.limits
        self._max_bytes = limits.max_payload_bytes
        self._max_depth = limits.max_json_depth
        self._ts_limits = TsLimits.from_config(limits)
        self._now_ns = now_ns
        self._formats: dict[str, _Format] = {
            "number": self._number, "value": self._value, "object": self._object,
            "array": self._array,
        }

    @property
    def router(self) -> TopicRouter:
        return self._router

    def filters(self) -> list[tuple[str, int]]:
        """The MQTT subscription filters and their QoS, e.g. ("plant/+/+/+", 1)."""
        return self._router.filters()

    def decode(self, topics: Sequence[str], payloads: Sequence[bytes],
               received_ns: Sequence[int]) -> tuple[Batch, list[Event], list[QuarantineRecord]]:
        """Decode one chunk of messages given as three equal-length sequences (topic,
        payload, receive time in ns). Readings and events keep arrival order; a message
        or item that cannot be kept becomes a QuarantineRecord and the rest is kept.
        Calls `now_ns` once, for the max_future_s limit. Raises only if the sequences
        differ in length."""
        out = _Chunk(self.source, self._ts_limits.window(self._now_ns()))
        route_of, formats, max_bytes = self._router.route, self._formats, self._max_bytes
        for topic, payload, rx in zip(topics, payloads, received_ns, strict=True):
            out.topic, out.payload, out.rx = topic, payload, rx  # no call: once per message
            route = route_of(topic)
            if isinstance(route, str):
                out.reject(route)
                continue
            try:
                if not 0 < len(payload) <= max_bytes:
                    raise Reject(size_reason(len(payload), max_bytes))
                formats[route.sub.format](route, payload, rx, out)
            except Exception as exc:  # noqa: BLE001 - a decoder bug in one message must not
                # raise out of decode: the chunk would be redelivered and fail forever
                reason = (exc.reason if isinstance(exc, Reject)
                          else f"decoder error: {type(exc).__name__}: {exc}")
                out.reject(reason, route.signal.id if route.signal is not None else None)
        return out.batch(), out.events, out.quarantined

    def _number(self, route: Route, payload: bytes, rx: int, out: _Chunk) -> None:
        signal = _signal(route)
        if not signal.is_string:
            out.reading(rx, signal.id, bare_number(payload), Quality.TS_RECEIVED)
            return
        try:
            text = payload.decode()
        except UnicodeDecodeError as exc:
            raise Reject(f"invalid UTF-8: {exc}") from None
        out.store(signal, rx, text, Quality.TS_RECEIVED)

    def _value(self, route: Route, payload: bytes, rx: int, out: _Chunk) -> None:
        doc = load_json(payload, self._max_depth)
        if not isinstance(doc, dict):
            raise Reject(f"expected a JSON object, found {describe(doc)}")
        sub = route.sub
        flags = 0 if sub.quality_field is None else _quality(doc.get(sub.quality_field, 0))
        _store_one(route, doc.get(sub.ts_field), doc.get(sub.value_field, _MISSING), rx, out,
                   flags=flags)

    def _object(self, route: Route, payload: bytes, rx: int, out: _Chunk) -> None:
        doc = load_json(payload, self._max_depth)
        if not isinstance(doc, dict):
            raise Reject(f"expected a JSON object, found {describe(doc)}")
        sub = route.sub
        values = doc if sub.values_path is None else _at(doc, sub.values_path, "values_path")
        if not isinstance(values, dict):
            raise Reject(f"values_path {'.'.join(sub.values_path or ())!r}: expected a JSON "
                         f"object, found {describe(values)}")
        ts_raw = values.get(sub.ts_field) if sub.ts_path is None else _at(doc, sub.ts_path,
                                                                          "ts_path")
        ts, quality = out.window.reading_time(ts_raw, sub.ts_unit, rx)
        skip = sub.ts_key
        for key, raw in values.items():
            if key == skip:
                continue
            signal = route.signals.get(key)
            if signal is None:
                out.reject(f"machine {route.machine} has no signal {key!r}")
                continue
            try:
                out.store(signal, ts, raw, quality)
            except Reject as exc:
                out.reject(f"{key}: {exc.reason}", signal.id)

    def _array(self, route: Route, payload: bytes, rx: int, out: _Chunk) -> None:
        doc = load_json(payload, self._max_depth)
        signal, sub = _signal(route), route.sub
        items: Iterable[Any]
        values: list[Any] | None
        if isinstance(doc, dict):
            ts_col, values = _columns(doc, sub)
            items = ((None, v) for v in values) if ts_col is None else zip(
                ts_col, values, strict=True)
            split: Callable[[Any, SubscriptionConfig], tuple[Any, Any]] = _pair
        elif isinstance(doc, list):
            ts_col, values = _rows_as_columns(doc, sub)
            items, split = doc, _row
        else:
            raise Reject(f"expected a JSON array or an object of arrays, found {describe(doc)}")
        if values is not None and not signal.is_string and _fast_array(
                route, ts_col, values, rx, out):
            return
        for i, item in enumerate(items):
            try:
                _store_one(route, *split(item, sub), rx, out)
            except Reject as exc:
                out.reject(f"item {i}: {exc.reason}", signal.id)


def _at(doc: dict[str, Any], path: tuple[str, ...], key: str) -> Any:
    """The value at `path` in `doc`; Reject naming the subscription's `key` and where
    the payload stops matching it."""
    node: Any = doc
    for i, part in enumerate(path):
        if not isinstance(node, dict):
            raise Reject(f"{key} {'.'.join(path)!r}: expected a JSON object at "
                         f"{'.'.join(path[:i])!r}, found {describe(node)}")
        node = node.get(part, _MISSING)
        if node is _MISSING:
            raise Reject(f"{key} {'.'.join(path)!r}: no key {'.'.join(path[:i + 1])!r}")
    return node


def _signal(route: Route) -> SignalRef:
    if route.signal is None:  # the router gives every non-object route a signal
        raise Reject("subscription maps no signal")
    return route.signal


def _store_one(route: Route, ts_raw: object, raw: object, rx: int, out: _Chunk, *,
               flags: int = 0) -> None:
    if raw is _MISSING:
        raise Reject(f"missing field {route.sub.value_field!r}")
    ts, quality = out.window.reading_time(ts_raw, route.sub.ts_unit, rx)
    out.store(_signal(route), ts, raw, quality | flags)


def _quality(raw: object) -> int:
    """A payload's quality flags: an integer of Quality's bits."""
    if type(raw) is not int or not 0 <= raw <= ALL_QUALITY:
        raise Reject(f"quality: expected an integer of quality flags from 0 to "
                     f"{ALL_QUALITY}, found {describe(raw)}")
    return raw


def _row(item: Any, sub: SubscriptionConfig) -> tuple[Any, Any]:
    if not isinstance(item, dict):
        raise Reject(f"expected an object, found {describe(item)}")
    return item.get(sub.ts_field), item.get(sub.value_field, _MISSING)


def _pair(item: tuple[Any, Any], sub: SubscriptionConfig) -> tuple[Any, Any]:
    return item


def _columns(doc: dict[str, Any], sub: SubscriptionConfig) -> tuple[list[Any] | None, list[Any]]:
    """The timestamp (None if absent) and value columns of a columnar array payload."""
    values = doc.get(sub.value_field, _MISSING)
    if values is _MISSING:
        raise Reject(f"missing field {sub.value_field!r}")
    ts = doc.get(sub.ts_field)
    for name, column in ((sub.value_field, values), (sub.ts_field, ts)):
        if column is not None and not isinstance(column, list):
            raise Reject(f"field {name!r} must be an array, found {describe(column)}")
    if ts is not None and len(ts) != len(values):
        raise Reject(f"columns {sub.ts_field!r} and {sub.value_field!r} differ in length: "
                      f"{len(ts)} and {len(values)}")
    return ts, values


def _rows_as_columns(doc: list[Any], sub: SubscriptionConfig
                     ) -> tuple[list[Any] | None, list[Any] | None]:
    """The columns of a list of row objects, or (None, None) unless every row has both
    fields; then the rows are decoded one by one."""
    try:
        return [row[sub.ts_field] for row in doc], [row[sub.value_field] for row in doc]
    except (KeyError, TypeError, IndexError):
        return None, None


def _fast_array(route: Route, ts_col: list[Any] | None, values: list[Any], rx: int,
                out: _Chunk) -> bool:
    """Store a whole numeric array at once; False if any item needs a closer look."""
    signal_id = _signal(route).id
    if not values:
        return True
    numbers = number_column(values)
    if numbers is None:
        return False
    if ts_col is None:
        out.column(np.full(len(values), rx, np.int64), signal_id, numbers,
                   Quality.TS_RECEIVED)
        return True
    ts_ns = out.window.column(ts_col, route.sub.ts_unit)
    if ts_ns is None:
        return False
    out.column(ts_ns, signal_id, numbers, Quality.GOOD)
    return True
