"""The Sparkplug B source's decoder without a broker: the cases a real edge node does
not produce on demand (a payload that is not protobuf, unsupported metric types, text
for a number signal, an old connection's NDEATH, signed integers of every width)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from connectors.sparkplug import metric_value
from connectors.sparkplug_b_pb2 import DataType, Payload
from connectors.sparkplug_config import SparkplugSourceConfig
from connectors.sparkplug_source import SparkplugDecoder
from gateway.types import OFFLINE_EVENT, Batch, Event, Quality, QuarantineRecord
from ombre.config import validate_config

NODE = "spBv1.0/g1/{kind}/n1"
DEVICE = "spBv1.0/g1/{kind}/n1/d1"


def decoder(tmp_path: Path) -> SparkplugDecoder:
    config = validate_config({
        "data_dir": str(tmp_path),
        "sites": [{"id": "s", "lines": [{"id": "l", "machines": [{"id": "d1", "signals": [
            {"name": "temp"}, {"name": "state", "type": "string"}]}]}]}],
        "sources": [{"type": "sparkplug", "name": "edge", "group_id": "g1"}],
        "shadow": {"enabled": False},
    })
    [source] = config.sources
    assert isinstance(source, SparkplugSourceConfig)
    return SparkplugDecoder(source, config, config.registry())


def payload(seq: int | None, *metrics: dict[str, Any]) -> bytes:
    message = Payload(timestamp=time.time_ns() // 1_000_000)
    if seq is not None:
        message.seq = seq
    for metric in metrics:
        message.metrics.add(**metric)
    return message.SerializeToString()


def decode(d: SparkplugDecoder, *messages: tuple[str, bytes]
           ) -> tuple[Batch, list[Event], list[QuarantineRecord]]:
    return d.decode([t for t, _ in messages], [p for _, p in messages],
                    [time.time_ns()] * len(messages))


def born(d: SparkplugDecoder, bd_seq: int = 0) -> None:
    batch, events, quarantined = decode(
        d, (NODE.format(kind="NBIRTH"), payload(0, {"name": "bdSeq", "datatype": DataType.UInt64,
                                                     "long_value": bd_seq})),
        (DEVICE.format(kind="DBIRTH"), payload(
            1, {"name": "temp", "alias": 1, "datatype": DataType.Double, "double_value": 20.0},
            {"name": "state", "alias": 2, "datatype": DataType.String, "string_value": "IDLE"},
            {"name": "rpm", "alias": 3, "datatype": DataType.Double, "double_value": 5.0})))
    assert batch.value.tolist() == [20.0]
    assert [e.value for e in events] == ["IDLE"]
    [unmapped] = quarantined  # rpm is no signal of d1: one record names it
    assert unmapped.reason == "1 metric(s) map to no signal of machine d1: rpm"


def test_bad_payloads_and_metrics_are_quarantined_and_the_rest_kept(tmp_path: Path) -> None:
    d = decoder(tmp_path)
    born(d)
    batch, events, quarantined = decode(
        d, (DEVICE.format(kind="DDATA"), b"\xff\xff not protobuf"),
        (DEVICE.format(kind="DDATA"), payload(
            2, {"alias": 1, "datatype": DataType.String, "string_value": "hot"},
            {"alias": 1, "datatype": DataType.DataSet},
            {"alias": 9, "datatype": DataType.Double, "double_value": 1.0},
            {"alias": 1, "datatype": DataType.Double, "double_value": 21.0},
            {"alias": 1, "datatype": DataType.Double, "double_value": 22.0,
             "is_historical": True, "properties": {"keys": ["Quality"], "values": [
                 {"type": DataType.Int32, "int_value": 64}]}},
            {"alias": 2, "datatype": DataType.String, "is_null": True})))
    assert batch.value.tolist() == [21.0, 22.0]
    assert batch.quality.tolist() == [0, Quality.UNCERTAIN | Quality.HISTORICAL]
    assert [e.value for e in events] == [None]
    reasons = [q.reason for q in quarantined]
    assert reasons[0].startswith("not a Sparkplug B payload")
    assert reasons[1:] == ["metric alias 1: expected a number for signal temp, found text",
                           "metric alias 1: type DataSet is not a number, text or boolean",
                           "metric alias 9 was not in the birth"]
    assert d.requests == []  # nothing asks for a rebirth: the seq followed


def test_an_old_connections_ndeath_changes_nothing(tmp_path: Path) -> None:
    d = decoder(tmp_path)
    born(d, bd_seq=4)
    death = payload(None, {"name": "bdSeq", "datatype": DataType.UInt64, "long_value": 3})
    assert decode(d, (NODE.format(kind="NDEATH"), death))[1] == []
    batch, _, quarantined = decode(d, (DEVICE.format(kind="DDATA"), payload(
        2, {"alias": 1, "datatype": DataType.Double, "double_value": 1.5})))
    assert batch.value.tolist() == [1.5]
    assert quarantined == []
    death = payload(None, {"name": "bdSeq", "datatype": DataType.UInt64, "long_value": 4})
    [offline] = decode(d, (NODE.format(kind="NDEATH"), death))[1]
    assert (offline.machine, offline.name) == ("d1", OFFLINE_EVENT)
    _, _, [before_birth] = decode(d, (DEVICE.format(kind="DDATA"), payload(
        3, {"alias": 1, "datatype": DataType.Double, "double_value": 1.5})))
    assert before_birth.reason.startswith("data before its birth")
    assert d.requests == ["spBv1.0/g1/NCMD/n1"]


@pytest.mark.parametrize(("datatype", "field", "raw", "value"), [
    (DataType.Int8, "int_value", 0xFB, -5.0),  # in 8 bits
    (DataType.Int8, "int_value", 0xFFFF_FFFB, -5.0),  # in the field's 32
    (DataType.Int16, "int_value", 0xFFFF_FFFB, -5.0),
    (DataType.Int32, "int_value", 0x7FFF_FFFF, 2_147_483_647.0),
    (DataType.Int64, "long_value", 2**64 - 5, -5.0),
    (DataType.UInt32, "int_value", 0xFFFF_FFFB, 4_294_967_291.0),
    (DataType.UInt64, "long_value", 2**63, 2.0**63),
    (DataType.Boolean, "boolean_value", True, True),
])
def test_integers_are_read_in_twos_complement(datatype: int, field: str, raw: object,
                                               value: object) -> None:
    metric = Payload.Metric(name="x", datatype=datatype, **{field: raw})
    assert metric_value(metric) == value
