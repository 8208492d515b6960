"""MQTT payloads to columnar readings, events and quarantine records.

Pure code on the hot path: no I/O, no threads, no logging. The MQTT source calls
`PayloadDecoder.decode` once per chunk of received messages; a bad payload, topic,
value or timestamp becomes a QuarantineRecord and the rest of the chunk is kept."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import orjson

from connectors.topics import Route, SignalRef, TopicRouter
from gateway.config import OmbreConfig, SubscriptionConfig
from gateway.types import (
    Batch,
    Event,
    EventValue,
    Float64Array,
    Int64Array,
    Quality,
    QuarantineRecord,
    SignalRegistry,
)

HEAD_BYTES = 256  # how much of a quarantined payload is kept
_FACTOR = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
_UNIT_NAME = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
_BOOLS = {b"true": 1.0, b"false": 0.0}
_MISSING: Any = object()


class _Reject(Exception):  # noqa: N818 - control flow, never leaves this module
    """The message or item cannot be kept; `reason` says what was wrong and where."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------- timestamps

_RFC3339 = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
                      r"(?:\.([0-9]+))?(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))")
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_rfc3339(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 timestamp with an offset, exact to the
    nanosecond; raises ValueError if `text` is not one, TypeError if it is no string."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError(f"{_clip(text)!r} is not an RFC 3339 timestamp")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    if hour > 23 or minute > 59 or second > 60:
        raise ValueError(f"{text!r} has no such time of day")
    try:
        days = date(year, month, day).toordinal() - _EPOCH_DAY
    except ValueError as exc:
        raise ValueError(f"{text!r} has no such date: {exc}") from None
    offset = 0 if m[8] is None else (int(m[9]) * 60 + int(m[10])) * (-60 if m[8] == "-" else 60)
    seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset
    return seconds * 10**9 + int((m[7] or "0")[:9].ljust(9, "0"))


@dataclass(frozen=True, slots=True)
class TsWindow:
    """The timestamps accepted in one chunk: from `lo_ns` (LimitsConfig.oldest_ts) to
    `hi_ns` (now + max_future_s), both inclusive."""

    lo_ns: int
    hi_ns: int
    oldest_text: str
    max_future_s: float

    def to_ns(self, raw: object, unit: str) -> int:
        """One timestamp from a payload as int ns; raises _Reject saying what is wrong."""
        if unit == "rfc3339":
            if not isinstance(raw, str):
                raise _Reject(f"expected an RFC 3339 timestamp string, found {describe(raw)}")
            try:
                ns = parse_rfc3339(raw)
            except ValueError as exc:
                raise _Reject(f"bad timestamp: {exc}") from None
            if not self.lo_ns <= ns <= self.hi_ns:
                raise _Reject(self._range_reason(raw, unit))
            return ns
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise _Reject(f"expected a timestamp number, found {describe(raw)}{_rfc_hint(raw)}")
        factor = _FACTOR[unit]
        if not self.lo_ns <= raw * factor <= self.hi_ns:
            raise _Reject(self._range_reason(raw, unit))
        if isinstance(raw, int):
            return raw * factor
        whole = math.floor(raw)  # scale the fraction alone: no rounding of the whole
        return whole * factor + round((raw - whole) * factor)

    def column(self, raw: Sequence[Any], unit: str) -> Int64Array | None:
        """A non-empty list of timestamps as int64 ns, or None unless every one is a
        number (an RFC 3339 string for `rfc3339`) inside the window. One range check
        per array; on None the caller converts item by item to find the bad ones."""
        try:
            if unit == "rfc3339":
                arr = np.fromiter(map(parse_rfc3339, raw), np.int64, len(raw))
            else:
                arr = np.asarray(raw)
        except (ValueError, TypeError, OverflowError):
            return None
        factor = _FACTOR.get(unit, 1)
        if arr.ndim != 1 or arr.dtype.kind not in "iuf":
            return None
        if arr.dtype.kind == "f":
            if not (arr.min() >= self.lo_ns / factor and arr.max() <= self.hi_ns / factor):
                return None
            whole = np.floor(arr)
            return (whole.astype(np.int64) * factor
                    + np.rint((arr - whole) * factor).astype(np.int64))
        # int bounds: comparing an int array with a float costs more than the check
        if not (arr.min() >= -(-self.lo_ns // factor) and arr.max() <= self.hi_ns // factor):
            return None
        ns: Int64Array = arr.astype(np.int64, copy=False)
        return ns * factor if factor != 1 else ns

    def _range_reason(self, raw: float | str, unit: str) -> str:
        ns = parse_rfc3339(raw) if isinstance(raw, str) else raw * _FACTOR[unit]
        where = (f"before {self.oldest_text}" if ns < self.lo_ns
                 else f"more than {self.max_future_s:g} s in the future")
        if isinstance(raw, str):
            return f"timestamp {raw!r} is {where}"
        reason = f"timestamp {raw!r} in {unit} is {_iso(ns)}, {where}"
        for other, factor in _FACTOR.items():
            if other != unit and self.lo_ns <= raw * factor <= self.hi_ns:
                return f"{reason}; it looks like {_UNIT_NAME[other]}, set ts_unit: {other}"
        return reason


def _iso(ns: float) -> str:
    try:
        return (_EPOCH + timedelta(microseconds=ns // 1000)).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError):
        return f"about year {1970 + ns / 31_556_952e9:.0f}"


def _rfc_hint(raw: object) -> str:
    try:
        parse_rfc3339(raw)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return ""
    return "; it looks like RFC 3339, set ts_unit: rfc3339"


# ---------------------------------------------------------------- values and limits

def describe(raw: object) -> str:
    """A JSON value's type, and its text when short, for quarantine reasons."""
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return f"bool {'true' if raw else 'false'}"
    if isinstance(raw, str):
        return f"string {_clip(raw)!r}"
    if isinstance(raw, dict | list):
        return "object" if isinstance(raw, dict) else "array"
    return f"number {raw!r}"


def _clip(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "..."


def number_value(raw: object) -> float:
    """A JSON number or bool as a finite float; raises _Reject for anything else."""
    if isinstance(raw, float):
        value = raw
    elif isinstance(raw, int):  # bools too: true is 1.0
        try:
            value = float(raw)
        except OverflowError:
            raise _Reject("value is not finite") from None
    else:
        raise _Reject(f"expected a number, found {describe(raw)}")
    if not math.isfinite(value):
        raise _Reject("value is not finite")
    return value


def event_value(raw: object) -> EventValue:
    """A JSON string, number or bool kept as is for an event; raises _Reject otherwise."""
    if isinstance(raw, str | int | float):
        return raw
    raise _Reject(f"expected a string, number or bool, found {describe(raw)}")


def bare_number(payload: bytes) -> float:
    """A bare text payload (`21.5`, `true`) as a finite float; raises _Reject otherwise."""
    try:
        value = float(payload)
    except ValueError:
        flag = _BOOLS.get(payload.strip())
        if flag is None:
            text = _clip(payload.decode(errors="replace"))
            raise _Reject(f"expected a number, found {text!r}") from None
        return flag
    if not math.isfinite(value):
        raise _Reject("value is not finite")
    return value


_NON_STRUCTURAL = bytes(b for b in range(256) if b not in b'[]{}"')
# openers become int8 1, closers -1; quotes stay for stripping strings
_DEPTH_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_STRING = re.compile(rb'"[^"]*"')


def json_depth_over(payload: bytes, limit: int) -> int:
    """The nesting depth of JSON text if it exceeds `limit`, else 0, without parsing.
    Brackets inside strings do not count. Costs two byte counts when there are at most
    `limit` brackets, else a few C passes over the bytes and one numpy cumsum."""
    if payload.count(b"[") + payload.count(b"{") <= limit:
        return 0
    if b"\\" in payload:  # drop escapes that could hide or fake a quote
        payload = payload.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = payload.translate(_DEPTH_STEP, _NON_STRUCTURAL).replace(b'""', b"")
    if b'"' in skeleton:  # some strings hold brackets
        skeleton = _STRING.sub(b"", skeleton)
    if not skeleton:
        return 0
    depth = int(np.frombuffer(skeleton, np.int8).cumsum(dtype=np.int64).max())
    return depth if depth > limit else 0


def load_json(payload: bytes, max_depth: int) -> Any:
    """orjson.loads after the depth check; raises _Reject with the parser's message."""
    depth = json_depth_over(payload, max_depth)
    if depth:
        raise _Reject(f"JSON nesting depth {depth} exceeds max_json_depth {max_depth}")
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise _Reject(f"malformed JSON: {exc}") from None


def _number_column(values: Sequence[Any]) -> Float64Array | None:
    """A list of JSON numbers and bools from orjson as float64, or None if any item is
    not one. orjson refuses NaN and infinities, so the result is finite."""
    try:
        arr = np.asarray(values)  # no dtype: it would turn "1.5" and null into numbers
    except (ValueError, TypeError, OverflowError):
        return None
    if arr.ndim != 1 or arr.dtype.kind not in "biuf":
        return None
    floats: Float64Array = arr.astype(np.float64, copy=False)
    return floats


# ---------------------------------------------------------------- decoding

class _Chunk:
    """What one `decode` call produces, in arrival order, and the message at hand.
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

    def begin(self, topic: str, payload: bytes, rx: int) -> None:
        self.topic, self.payload, self.rx = topic, payload, rx

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
                 config: OmbreConfig, registry: SignalRegistry, *,
                 now_ns: Callable[[], int] = time.time_ns, cache_size: int = 50_000) -> None:
        self.source = source
        self._router = TopicRouter(subscriptions, config, registry, cache_size=cache_size)
        limits = config.runtime.limits
        self._max_bytes = limits.max_payload_bytes
        self._max_depth = limits.max_json_depth
        self._max_future_s = limits.max_future_s
        oldest = datetime.fromisoformat(limits.oldest_ts)  # validated aware by the config
        self._oldest_ns = (oldest - _EPOCH) // timedelta(microseconds=1) * 1000
        self._oldest_text = _iso(self._oldest_ns).removesuffix("T00:00:00Z")
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
        window = TsWindow(self._oldest_ns, self._now_ns() + round(self._max_future_s * 1e9),
                          self._oldest_text, self._max_future_s)
        out = _Chunk(self.source, window)
        for topic, payload, rx in zip(topics, payloads, received_ns, strict=True):
            out.begin(topic, payload, rx)
            route = self._router.route(topic)
            if isinstance(route, str):
                out.reject(route)
                continue
            signal_id = route.signal.id if route.signal is not None else None
            try:
                if len(payload) > self._max_bytes:
                    raise _Reject(f"payload of {len(payload)} bytes exceeds max_payload_bytes "
                                  f"{self._max_bytes}")
                if not payload:
                    raise _Reject("empty payload")
                self._formats[route.sub.format](route, payload, rx, out)
            except _Reject as exc:
                out.reject(exc.reason, signal_id)
            except Exception as exc:  # noqa: BLE001 - a decoder bug in one message must not
                # raise out of decode: the chunk would be redelivered and fail forever
                out.reject(f"decoder error: {type(exc).__name__}: {exc}", signal_id)
        return out.batch(), out.events, out.quarantined

    def _number(self, route: Route, payload: bytes, rx: int, out: _Chunk) -> None:
        signal = _signal(route)
        if not signal.is_string:
            out.reading(rx, signal.id, bare_number(payload), Quality.TS_RECEIVED)
            return
        try:
            text = payload.decode()
        except UnicodeDecodeError as exc:
            raise _Reject(f"invalid UTF-8: {exc}") from None
        out.store(signal, rx, text, Quality.TS_RECEIVED)

    def _value(self, route: Route, payload: bytes, rx: int, out: _Chunk) -> None:
        doc = load_json(payload, self._max_depth)
        if not isinstance(doc, dict):
            raise _Reject(f"expected a JSON object, found {describe(doc)}")
        _store_one(route, _row(doc, route.sub), rx, out)

    def _object(self, route: Route, payload: bytes, rx: int, out: _Chunk) -> None:
        doc = load_json(payload, self._max_depth)
        if not isinstance(doc, dict):
            raise _Reject(f"expected a JSON object, found {describe(doc)}")
        sub = route.sub
        ts_raw = doc.get(sub.ts_field)
        ts, quality = _timestamp(ts_raw, sub, rx, out)
        for key, raw in doc.items():
            if key == sub.ts_field:
                continue
            signal = route.signals.get(key)
            if signal is None:
                out.reject(f"machine {route.machine} has no signal {key!r}")
                continue
            try:
                out.store(signal, ts, raw, quality)
            except _Reject as exc:
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
            raise _Reject(f"expected a JSON array or an object of arrays, found {describe(doc)}")
        if values is not None and not signal.is_string and _fast_array(
                route, ts_col, values, rx, out):
            return
        for i, item in enumerate(items):
            try:
                _store_one(route, split(item, sub), rx, out)
            except _Reject as exc:
                out.reject(f"item {i}: {exc.reason}", signal.id)


def _signal(route: Route) -> SignalRef:
    if route.signal is None:  # the router gives every non-object route a signal
        raise _Reject("subscription maps no signal")
    return route.signal


def _timestamp(raw: object, sub: SubscriptionConfig, rx: int, out: _Chunk) -> tuple[int, int]:
    if raw is None:
        return rx, Quality.TS_RECEIVED
    return out.window.to_ns(raw, sub.ts_unit), Quality.GOOD


def _store_one(route: Route, item: tuple[Any, Any], rx: int, out: _Chunk) -> None:
    ts_raw, raw = item
    if raw is _MISSING:
        raise _Reject(f"missing field {route.sub.value_field!r}")
    ts, quality = _timestamp(ts_raw, route.sub, rx, out)
    out.store(_signal(route), ts, raw, quality)


def _row(item: Any, sub: SubscriptionConfig) -> tuple[Any, Any]:
    if not isinstance(item, dict):
        raise _Reject(f"expected an object, found {describe(item)}")
    return item.get(sub.ts_field), item.get(sub.value_field, _MISSING)


def _pair(item: tuple[Any, Any], sub: SubscriptionConfig) -> tuple[Any, Any]:
    return item


def _columns(doc: dict[str, Any], sub: SubscriptionConfig) -> tuple[list[Any] | None, list[Any]]:
    """The timestamp (None if absent) and value columns of a columnar array payload."""
    values = doc.get(sub.value_field, _MISSING)
    if values is _MISSING:
        raise _Reject(f"missing field {sub.value_field!r}")
    ts = doc.get(sub.ts_field)
    for name, column in ((sub.value_field, values), (sub.ts_field, ts)):
        if column is not None and not isinstance(column, list):
            raise _Reject(f"field {name!r} must be an array, found {describe(column)}")
    if ts is not None and len(ts) != len(values):
        raise _Reject(f"columns {sub.ts_field!r} and {sub.value_field!r} differ in length: "
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
    numbers = _number_column(values)
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
