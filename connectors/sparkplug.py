"""Sparkplug B, the part both directions share: topics, sequence numbers, and metric
values to and from the specification's protobuf schema (connectors/sparkplug_b.proto,
Eclipse Tahu's, compiled by `make proto` into sparkplug_b_pb2.py).

Topics are `spBv1.0/{group}/{type}/{edge node}[/{device}]`, and a primary host
application's state is the retained `spBv1.0/STATE/{host id}`, JSON `{"online": bool,
"timestamp": ms}` (Sparkplug 3.0). Every message of an edge node but its NDEATH carries
`seq`, 0 to 255 and round again; NBIRTH has 0. NBIRTH and NDEATH carry the `bdSeq`
metric, which tells a host which death belongs to which birth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import orjson

from connectors.sparkplug_b_pb2 import DataType, Payload
from gateway.types import Quality

NAMESPACE = "spBv1.0"
BD_SEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
SEQ_MODULO = 256

Value = float | str | bool | None
# The metric property that carries a value's quality, in OPC DA's codes (Ignition's
# convention): 192 good, 64 uncertain, 0 bad.
QUALITY = "Quality"
QUALITY_CODES = {int(Quality.BAD): 0, int(Quality.UNCERTAIN): 64}

_SIGNED: dict[int, int] = {DataType.Int8: 8, DataType.Int16: 16, DataType.Int32: 32,
                           DataType.Int64: 64}
_INTEGERS = (DataType.Int8, DataType.Int16, DataType.Int32, DataType.Int64, DataType.UInt8,
             DataType.UInt16, DataType.UInt32, DataType.UInt64, DataType.DateTime)
_TEXTS = (DataType.String, DataType.Text, DataType.UUID)


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed Sparkplug B topic; `device` is None for the edge node's own messages."""

    group: str
    kind: str  # NBIRTH, NDATA, NDEATH, NCMD, DBIRTH, DDATA, DDEATH, DCMD
    node: str
    device: str | None = None

    def __str__(self) -> str:
        tail = f"/{self.device}" if self.device is not None else ""
        return f"{NAMESPACE}/{self.group}/{self.kind}/{self.node}{tail}"


def parse_topic(topic: str) -> Topic | None:
    """The topic's parts, or None for anything but an edge node's message (STATE too)."""
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE or parts[1] == "STATE":
        return None
    return Topic(parts[1], parts[2], parts[3], parts[4] if len(parts) == 5 else None)


def state_topic(host_id: str) -> str:
    return f"{NAMESPACE}/STATE/{host_id}"


def host_state(payload: bytes) -> tuple[bool, int | None] | None:
    """A STATE payload's online flag and timestamp (ms since the epoch; None in the bare
    words ONLINE and OFFLINE of Sparkplug 2.2 hosts); None when it is unreadable.
    Sparkplug 3.0 sends JSON `{"online": true, "timestamp": ...}`."""
    word = payload.strip().upper()
    if word in (b"ONLINE", b"OFFLINE"):
        return word == b"ONLINE", None
    try:
        state = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(state, dict) or not isinstance(state.get("online"), bool):
        return None
    ts = state.get("timestamp")
    return state["online"], ts if isinstance(ts, int) and not isinstance(ts, bool) else None


def next_seq(seq: int) -> int:
    return (seq + 1) % SEQ_MODULO


def metric_value(metric: Payload.Metric) -> Value:
    """A scalar metric's value as Ombre carries it: a number (integers, floats and
    DateTime's milliseconds), a text or a bool; None when it is null. Raises ValueError
    for the types Ombre does not map to a signal (arrays, DataSet, Template, bytes)."""
    datatype = metric.datatype
    if metric.is_null:
        return None
    if datatype in _INTEGERS:
        raw = metric.int_value if metric.WhichOneof("value") == "int_value" else metric.long_value
        bits = _SIGNED.get(datatype)
        if bits is not None:  # two's complement, in the type's width or the field's
            width = next(w for w in (bits, 32, 64) if raw < 1 << w)
            raw -= (1 << width) if raw >= 1 << (width - 1) else 0
        return float(raw)
    if datatype == DataType.Float:
        return float(metric.float_value)
    if datatype == DataType.Double:
        return metric.double_value
    if datatype == DataType.Boolean:
        return metric.boolean_value
    if datatype in _TEXTS:
        return metric.string_value
    name = DataType.Name(datatype) if datatype in DataType.values() else str(datatype)
    raise ValueError(f"type {name} is not a number, text or boolean")


def set_quality(metric: Payload.Metric, quality: int) -> None:
    """Mark a metric bad or uncertain (its `Quality` property); a good one has none."""
    flags = [flag for flag in QUALITY_CODES if quality & flag]
    if flags:
        metric.properties.keys.append(QUALITY)
        metric.properties.values.add(type=DataType.Int32, int_value=QUALITY_CODES[flags[0]])


def quality_of(metric: Payload.Metric) -> int:
    """The Quality flags a metric's `Quality` property says (GOOD without one)."""
    for key, value in zip(metric.properties.keys, metric.properties.values, strict=False):
        if key == QUALITY and value.WhichOneof("value") == "int_value":
            code = value.int_value
            return int(Quality.GOOD if code >= 192 else
                       Quality.UNCERTAIN if code >= 64 else Quality.BAD)
    return int(Quality.GOOD)


def label(metric: Payload.Metric) -> str:
    """A metric as messages name it: its name, or its alias in data messages."""
    return metric.name or f"alias {metric.alias}"


def set_value(metric: Payload.Metric, value: float | str | None) -> None:
    """Set a metric's datatype and value from a reading (Double) or an event (String;
    a number or bool an event carries is sent as its text). NaN, infinity and None are
    sent as null: not every host reads non-finite doubles."""
    if isinstance(value, str) or (value is not None and metric.datatype == DataType.String):
        metric.datatype = DataType.String
        metric.string_value = value if isinstance(value, str) else str(value)
    elif value is None or not math.isfinite(value):
        metric.datatype = metric.datatype or DataType.Double
        metric.is_null = True
    else:
        metric.datatype = DataType.Double
        metric.double_value = float(value)
