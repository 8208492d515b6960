"""PayloadDecoder: topic templates, payload formats, limits and quarantine, end to end
through `decode`. Pure: no broker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.mqtt_config import SubscriptionConfig
from connectors.mqtt_decode import PayloadDecoder
from gateway.types import Batch, Event, Quality, QuarantineRecord
from ombre.config import validate_config

NOW_NS = 1_700_000_000 * 10**9  # 2023-11-14T22:13:20Z
RX_NS = NOW_NS - 5 * 10**9
TS_MS = 1_699_999_990_123  # 10 s before NOW_NS, in ms
PLANT: dict[str, Any] = {"sites": [{
    "id": "s1",
    "areas": [{"id": "a1", "lines": [{"id": "l1", "machines": [{"id": "press-3", "signals": [
        {"name": "force"}, {"name": "temp"}, {"name": "state", "type": "string"}]}]}]}],
    "lines": [{"id": "l2", "machines": [{"id": "cnc-1", "signals": [
        {"name": "spindle_speed"}, {"name": "spindle_temp"},
        {"name": "program", "type": "string"}]}]}],
}]}
PLANT_TEMPLATE = {"topic": "plant/{line}/{machine}/{signal}"}

Result = tuple[Batch, list[Event], list[QuarantineRecord]]


def make(*subs: dict[str, Any], cache_size: int = 50_000, **limits: Any) -> PayloadDecoder:
    config = validate_config({**PLANT, "runtime": {"limits": limits}})
    subscriptions = [SubscriptionConfig.model_validate(s) for s in subs]
    return PayloadDecoder("mqtt-a", subscriptions, config, config.registry(),
                          now_ns=lambda: NOW_NS, cache_size=cache_size)


def run(decoder: PayloadDecoder, *messages: tuple[str, bytes | str]) -> Result:
    topics = [t for t, _ in messages]
    payloads = [p.encode() if isinstance(p, str) else p for _, p in messages]
    return decoder.decode(topics, payloads, [RX_NS + i for i in range(len(messages))])


def sid(machine: str, signal: str) -> int:
    signal_id = validate_config(PLANT).registry().id_of(machine, signal)
    assert signal_id is not None
    return signal_id


def rows(batch: Batch) -> list[tuple[int, int, float, int]]:
    return list(zip(batch.ts_ns.tolist(), batch.signal_id.tolist(), batch.value.tolist(),
                    batch.quality.tolist(), strict=True))


def one_reason(result: Result) -> str:
    batch, events, quarantined = result
    assert len(batch) == 0
    assert events == []
    assert len(quarantined) == 1
    return quarantined[0].reason


def value_decoder(**sub: Any) -> PayloadDecoder:
    return make({**PLANT_TEMPLATE, "format": "value", **sub})


# ---------------------------------------------------------------- topics

def test_filters_turn_placeholders_into_plus_and_keep_highest_qos() -> None:
    decoder = make({**PLANT_TEMPLATE, "qos": 0}, {**PLANT_TEMPLATE, "qos": 2},
                   {"topic": "cnc/{signal}/#", "machine": "cnc-1", "qos": 1})
    assert decoder.filters() == [("plant/+/+/+", 2), ("cnc/+/#", 1)]


@pytest.mark.parametrize(("topic", "reason"), [
    ("other/l1/press-3/force", "topic matches none of the 1 subscription templates"),
    ("plant/l1/press-3", "topic matches none of the 1 subscription templates"),
    ("plant/l1/press-9/force", "unknown machine 'press-9'"),
    ("plant/l1/press-3/foo", "machine press-3 has no signal 'foo'"),
    ("plant/l2/press-3/force", "topic says line l2 but machine press-3 is on line l1"),
])
def test_topics_that_do_not_map_are_quarantined(topic: str, reason: str) -> None:
    decoder = make({**PLANT_TEMPLATE, "format": "number"})
    _, _, quarantined = run(decoder, (topic, "1"), ("plant/l1/press-3/force", "2"))
    assert [(q.topic, q.reason) for q in quarantined] == [(topic, reason)]


def test_site_placeholder_is_checked_against_the_plant() -> None:
    decoder = make({"topic": "{site}/{machine}/{signal}", "format": "number"})
    batch, _, quarantined = run(decoder, ("s1/press-3/force", "1"), ("s2/press-3/force", "1"))
    assert len(batch) == 1
    assert [q.reason for q in quarantined] == [
        "topic says site s2 but machine press-3 is at site s1"]


def test_area_placeholder_is_checked_against_the_plant() -> None:
    decoder = make({"topic": "{area}/{machine}/{signal}", "format": "number"})
    batch, _, quarantined = run(decoder, ("a1/press-3/force", "1"),
                                ("a1/cnc-1/spindle_speed", "1"), ("a2/press-3/force", "1"))
    assert len(batch) == 1
    assert [q.reason for q in quarantined] == [
        "topic says area a1 but machine cnc-1 is in no area",
        "topic says area a2 but machine press-3 is in area a1"]


def test_fixed_machine_and_signal_and_trailing_hash() -> None:
    decoder = make({"topic": "cnc/speed/#", "machine": "cnc-1", "signal": "spindle_speed",
                    "format": "number"}, {"topic": "press/+/{signal}", "machine": "press-3",
                                          "format": "number"})
    batch, _, quarantined = run(decoder, ("cnc/speed", "1"), ("cnc/speed/x/y", "2"),
                                ("press/anything/temp", "3"))
    assert quarantined == []
    assert batch.signal_id.tolist() == [sid("cnc-1", "spindle_speed")] * 2 + [
        sid("press-3", "temp")]


def test_first_template_that_maps_wins() -> None:
    decoder = make({"topic": "x/{machine}/{signal}", "format": "number"},
                   {"topic": "x/{signal}/#", "machine": "press-3", "format": "number"})
    batch, _, quarantined = run(decoder, ("x/force/y", "1"))  # first: unknown machine 'force'
    assert quarantined == []
    assert batch.signal_id.tolist() == [sid("press-3", "force")]


@pytest.mark.parametrize(("sub", "problem"), [
    ({"topic": "p/{machine}"}, "needs exactly one of {signal} or a fixed `signal`"),
    ({"topic": "p/{machine}/{signal}", "format": "object"}, "remove {signal}"),
    ({"topic": "p/#/{machine}"}, "neither text"),
    ({"topic": "p/{signal}", "machine": "nope"}, "unknown machine 'nope'"),
    ({"topic": "p", "machine": "press-3", "signal": "nope"}, "has no signal 'nope'"),
])
def test_bad_templates_fail_at_start_up(sub: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match="subscription topic") as info:
        make(sub)
    assert problem in str(info.value)


def test_topic_cache_stays_bounded_and_keeps_routing() -> None:
    decoder = make({**PLANT_TEMPLATE, "format": "number"}, cache_size=10)
    for i in range(25):
        run(decoder, (f"plant/l1/press-{i}/force", "1"), ("plant/l1/press-3/force", "2"))
        assert decoder.router.cached() <= 10
    batch, _, quarantined = run(decoder, ("plant/l1/press-3/force", "3"))
    assert (batch.value.tolist(), quarantined) == ([3.0], [])
    cached = decoder.router.cached()
    run(decoder, ("plant/l1/" + "x" * 300 + "/force", "1"))
    assert decoder.router.cached() == cached  # long topics are not cached


# ---------------------------------------------------------------- formats

def test_number_format_uses_receive_time_and_keeps_order() -> None:
    decoder = make({**PLANT_TEMPLATE, "format": "number"})
    batch, events, quarantined = run(
        decoder, ("plant/l1/press-3/force", "21.5"), ("plant/l1/press-3/temp", b" 7\n"),
        ("plant/l1/press-3/force", "true"), ("plant/l1/press-3/force", "false"))
    force, temp = sid("press-3", "force"), sid("press-3", "temp")
    q = Quality.TS_RECEIVED
    assert rows(batch) == [(RX_NS, force, 21.5, q), (RX_NS + 1, temp, 7.0, q),
                           (RX_NS + 2, force, 1.0, q), (RX_NS + 3, force, 0.0, q)]
    assert (events, quarantined) == ([], [])


def test_number_format_string_signal_is_the_whole_payload() -> None:
    decoder = make({**PLANT_TEMPLATE, "format": "number"})
    batch, events, _ = run(decoder, ("plant/l1/press-3/state", " running 1 "))
    assert len(batch) == 0
    assert events == [Event(RX_NS, "press-3", "state", " running 1 ", Quality.TS_RECEIVED)]


@pytest.mark.parametrize(("payload", "reason"), [
    (b"abc", "expected a number, found 'abc'"),
    (b"nan", "value is not finite"),
    (b"-inf", "value is not finite"),
    (b"1e999", "value is not finite"),
    (b"", "empty payload"),
])
def test_number_format_rejects(payload: bytes, reason: str) -> None:
    decoder = make({**PLANT_TEMPLATE, "format": "number"})
    result = run(decoder, ("plant/l1/press-3/force", payload))
    assert one_reason(result) == reason
    assert result[2][0].signal_id == sid("press-3", "force")


def test_value_format_with_and_without_timestamp() -> None:
    decoder = value_decoder()
    batch, _, quarantined = run(
        decoder, ("plant/l1/press-3/force", f'{{"value": 1.5, "ts": {TS_MS}}}'),
        ("plant/l1/press-3/temp", '{"value": 40}'),
        ("plant/l1/press-3/force", f'{{"value": true, "ts": {TS_MS}.5, "other": [1]}}'))
    assert quarantined == []
    assert rows(batch) == [
        (TS_MS * 10**6, sid("press-3", "force"), 1.5, Quality.GOOD),
        (RX_NS + 1, sid("press-3", "temp"), 40.0, Quality.TS_RECEIVED),
        (TS_MS * 10**6 + 500_000, sid("press-3", "force"), 1.0, Quality.GOOD),
    ]
    assert batch.ts_ns.dtype == np.int64
    assert batch.signal_id.dtype == np.int32


@pytest.mark.parametrize(("unit", "ts", "expected_ns"), [
    ("s", "1699999990", 1_699_999_990 * 10**9),
    ("s", "1699999990.25", 1_699_999_990_250_000_000),
    ("us", "1699999990123456", 1_699_999_990_123_456_000),
    ("ns", "1699999990123456789", 1_699_999_990_123_456_789),
    ("rfc3339", '"2023-11-14T22:13:10.123456789Z"', 1_699_999_990_123_456_789),
    ("rfc3339", '"2023-11-14T23:13:10.5+01:00"', 1_699_999_990_500_000_000),
])
def test_timestamp_units(unit: str, ts: str, expected_ns: int) -> None:
    decoder = value_decoder(ts_unit=unit, value_field="v", ts_field="t")
    batch, _, quarantined = run(decoder, ("plant/l1/press-3/force", f'{{"v": 2, "t": {ts}}}'))
    assert quarantined == []
    assert batch.ts_ns.tolist() == [expected_ns]


@pytest.mark.parametrize(("value", "found"), [
    ('"abc"', "string 'abc'"), ("null", "null"), ('{"a": 1}', "object"), ("[1]", "array"),
])
def test_value_format_rejects_wrong_value_types(value: str, found: str) -> None:
    result = run(value_decoder(), ("plant/l1/press-3/force", f'{{"value": {value}}}'))
    assert one_reason(result) == f"expected a number, found {found}"
    assert result[2][0].signal_id == sid("press-3", "force")


def test_value_format_string_signal_becomes_event() -> None:
    batch, events, quarantined = run(
        value_decoder(), ("plant/l1/press-3/state", f'{{"value": "running", "ts": {TS_MS}}}'),
        ("plant/l1/press-3/state", '{"value": 3}'),
        ("plant/l1/press-3/state", '{"value": {"a": 1}}'))
    assert len(batch) == 0
    assert events == [Event(TS_MS * 10**6, "press-3", "state", "running"),
                      Event(RX_NS + 1, "press-3", "state", 3, Quality.TS_RECEIVED)]
    assert [q.reason for q in quarantined] == ["expected a string, number or bool, found object"]


def test_value_format_reads_quality_flags_from_quality_field() -> None:
    """Ombre's own MQTT sink writes {"ts", "value", "quality"}: a consumer of it keeps
    each reading's flags; a quality that is not flags is quarantined, naming the key."""
    decoder = value_decoder(quality_field="quality")
    batch, _, quarantined = run(
        decoder, ("plant/l1/press-3/force", f'{{"value": 1.5, "ts": {TS_MS}, "quality": 1}}'),
        ("plant/l1/press-3/temp", '{"value": 40, "quality": 0}'),
        ("plant/l1/press-3/force", f'{{"value": 2, "ts": {TS_MS}}}'),
        ("plant/l1/press-3/force", '{"value": 3, "quality": "bad"}'),
        ("plant/l1/press-3/force", '{"value": 3, "quality": 64}'))
    assert rows(batch) == [
        (TS_MS * 10**6, sid("press-3", "force"), 1.5, Quality.BAD),
        (RX_NS + 1, sid("press-3", "temp"), 40.0, Quality.TS_RECEIVED),
        (TS_MS * 10**6, sid("press-3", "force"), 2.0, Quality.GOOD),
    ]
    assert [q.reason for q in quarantined] == [
        "quality: expected an integer of quality flags from 0 to 31, found string 'bad'",
        "quality: expected an integer of quality flags from 0 to 31, found number 64"]
    assert run(value_decoder(), ("plant/l1/press-3/temp", '{"value": 4, "quality": 1}'))[
        0].quality.tolist() == [Quality.TS_RECEIVED]  # without quality_field: not read


@pytest.mark.parametrize(("payload", "reason"), [
    (b'{"value": 1', "malformed JSON: "),
    (b'{"value": "\xff"}', "malformed JSON: str is not valid UTF-8"),
    (b"[1, 2]", "expected a JSON object, found array"),
    (b'{"ts": 1}', "missing field 'value'"),
])
def test_value_format_rejects_bad_documents(payload: bytes, reason: str) -> None:
    assert one_reason(run(value_decoder(), ("plant/l1/press-3/force", payload))).startswith(
        reason)


def test_object_format_quarantines_only_the_bad_keys() -> None:
    decoder = make({"topic": "cnc/{machine}", "format": "object"})
    payload = (f'{{"spindle_speed": 1200, "ts": {TS_MS}, "spindle_temp": 41.2, "foo": 1, '
               '"program": "P-17", "spindle_temp2": 3}')
    batch, events, quarantined = run(decoder, ("cnc/cnc-1", payload),
                                     ("cnc/cnc-1", '{"spindle_speed": "fast"}'))
    ts = TS_MS * 10**6
    assert rows(batch) == [(ts, sid("cnc-1", "spindle_speed"), 1200.0, Quality.GOOD),
                           (ts, sid("cnc-1", "spindle_temp"), 41.2, Quality.GOOD)]
    assert events == [Event(ts, "cnc-1", "program", "P-17")]
    assert [(q.reason, q.signal_id) for q in quarantined] == [
        ("machine cnc-1 has no signal 'foo'", None),
        ("machine cnc-1 has no signal 'spindle_temp2'", None),
        ("spindle_speed: expected a number, found string 'fast'", sid("cnc-1", "spindle_speed")),
    ]


def test_object_format_reads_the_thingsboard_shape_through_paths() -> None:
    decoder = make({"topic": "v1/{machine}", "format": "object", "values_path": "values",
                    "ts_path": "ts"})
    payload = f'{{"ts": {TS_MS}, "values": {{"spindle_speed": 1200, "program": "P-17"}}}}'
    batch, events, quarantined = run(decoder, ("v1/cnc-1", payload))
    ts = TS_MS * 10**6
    assert rows(batch) == [(ts, sid("cnc-1", "spindle_speed"), 1200.0, Quality.GOOD)]
    assert events == [Event(ts, "cnc-1", "program", "P-17")]
    assert quarantined == []


def test_object_format_dotted_paths_and_a_timestamp_inside_the_values() -> None:
    decoder = make({"topic": "v1/{machine}", "format": "object",
                    "values_path": "data.values", "ts_path": "data.values.time"})
    payload = f'{{"data": {{"values": {{"time": {TS_MS}, "spindle_temp": 41.5}}}}}}'
    batch, _, quarantined = run(decoder, ("v1/cnc-1", payload))
    assert rows(batch) == [(TS_MS * 10**6, sid("cnc-1", "spindle_temp"), 41.5, Quality.GOOD)]
    assert quarantined == []  # `time` is the timestamp, not an unknown signal


def test_object_format_without_ts_path_reads_ts_field_in_the_values() -> None:
    decoder = make({"topic": "v1/{machine}", "format": "object", "values_path": "values"})
    batch, _, _ = run(decoder, ("v1/cnc-1", f'{{"values": {{"ts": {TS_MS}, "spindle_temp": 1}}}}'))
    assert rows(batch) == [(TS_MS * 10**6, sid("cnc-1", "spindle_temp"), 1.0, Quality.GOOD)]


@pytest.mark.parametrize(("payload", "reason"), [
    (f'{{"ts": {TS_MS}, "vals": {{"spindle_temp": 1}}}}', "values_path 'values': no key 'values'"),
    (f'{{"ts": {TS_MS}, "values": [1, 2]}}',
     "values_path 'values': expected a JSON object, found array"),
    ('{"values": {"spindle_temp": 1}}', "ts_path 'meta.ts': no key 'meta'"),
    ('{"meta": 5, "values": {"spindle_temp": 1}}',
     "ts_path 'meta.ts': expected a JSON object at 'meta', found number 5"),
])
def test_object_format_paths_that_do_not_match_quarantine_the_message(
        payload: str, reason: str) -> None:
    decoder = make({"topic": "v1/{machine}", "format": "object", "values_path": "values",
                    "ts_path": "meta.ts"})
    assert one_reason(run(decoder, ("v1/cnc-1", payload))) == reason


@pytest.mark.parametrize(("sub", "problem"), [
    ({"format": "value", "values_path": "values"}, "expected values_path only with format"),
    ({"format": "object", "ts_path": "ts", "ts_field": "time"}, "expected ts_path or ts_field"),
    ({"format": "object", "values_path": "a..b"}, "expected a dotted path of keys"),
])
def test_paths_are_checked_in_the_config(sub: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        SubscriptionConfig.model_validate({"topic": "v1/{machine}", **sub})


def array_decoder(**sub: Any) -> PayloadDecoder:
    return make({"topic": "hf/{machine}/{signal}", "format": "array", **sub})


def test_array_columnar_and_rows_decode_exactly_in_order() -> None:
    ts = [TS_MS + i for i in range(100)]
    values = [i * 0.5 for i in range(100)]
    columnar = orjson.dumps({"ts": ts, "value": values})
    row_layout = orjson.dumps([{"ts": t, "value": v} for t, v in zip(ts, values, strict=True)])
    batch, _, quarantined = run(array_decoder(), ("hf/press-3/force", columnar),
                                ("hf/press-3/temp", "[]"), ("hf/press-3/temp", row_layout))
    assert quarantined == []
    expected_ts = [t * 10**6 for t in ts] * 2
    assert batch.ts_ns.tolist() == expected_ts
    assert batch.value.tolist() == values * 2
    assert batch.signal_id.tolist() == [sid("press-3", "force")] * 100 + [
        sid("press-3", "temp")] * 100
    assert batch.quality.tolist() == [Quality.GOOD] * 200


def test_array_interleaves_with_single_readings_in_arrival_order() -> None:
    decoder = make({"topic": "hf/{machine}/{signal}", "format": "array"},
                   {"topic": "one/{machine}/{signal}", "format": "value"})
    batch, _, _ = run(decoder, ("one/press-3/temp", '{"value": 1}'),
                      ("hf/press-3/force", '{"value": [2, 3]}'),
                      ("one/press-3/temp", '{"value": 4}'))
    assert batch.value.tolist() == [1, 2, 3, 4]
    assert batch.ts_ns.tolist() == [RX_NS, RX_NS + 1, RX_NS + 1, RX_NS + 2]
    assert batch.quality.tolist() == [Quality.TS_RECEIVED] * 4


@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_array_bad_items_quarantine_only_themselves(layout: str) -> None:
    items = [(TS_MS, 1), (TS_MS + 1, "x"), (TS_MS + 2, None), (TS_MS * 1000, 4),
             (TS_MS + 4, 5), ("soon", 6), (TS_MS + 6, True)]
    if layout == "rows":
        payload = orjson.dumps([{"ts": t, "value": v} for t, v in items] + [7, {"ts": 1}])
    else:
        payload = orjson.dumps({"ts": [t for t, _ in items], "value": [v for _, v in items]})
    batch, _, quarantined = run(array_decoder(), ("hf/press-3/force", payload))
    assert batch.value.tolist() == [1.0, 5.0, 1.0]
    assert batch.ts_ns.tolist() == [(TS_MS + i) * 10**6 for i in (0, 4, 6)]
    reasons = [q.reason for q in quarantined]
    assert reasons[:4] == [
        "item 1: expected a number, found string 'x'",
        "item 2: expected a number, found null",
        f"item 3: timestamp {TS_MS * 1000} in ms is about year 55841, more than 300 s "
        "in the future; it looks like microseconds, set ts_unit: us",
        "item 5: expected a timestamp number, found string 'soon'",
    ]
    if layout == "rows":
        assert reasons[4:] == ["item 7: expected an object, found number 7",
                               "item 8: missing field 'value'"]
    assert {q.signal_id for q in quarantined} == {sid("press-3", "force")}


def test_array_columns_without_ts_use_receive_time() -> None:
    batch, _, _ = run(array_decoder(), ("hf/press-3/force", '{"value": [1, 2.5, false]}'))
    assert rows(batch) == [(RX_NS, sid("press-3", "force"), v, Quality.TS_RECEIVED)
                           for v in (1.0, 2.5, 0.0)]


@pytest.mark.parametrize(("payload", "reason"), [
    ('{"ts": [1, 2], "value": [1]}', "columns 'ts' and 'value' differ in length: 2 and 1"),
    ('{"ts": 1, "value": [1]}', "field 'ts' must be an array, found number 1"),
    ('{"value": 1}', "field 'value' must be an array, found number 1"),
    ('"x"', "expected a JSON array or an object of arrays, found string 'x'"),
])
def test_array_rejects_bad_shapes(payload: str, reason: str) -> None:
    assert one_reason(run(array_decoder(), ("hf/press-3/force", payload))) == reason


def test_array_of_rfc3339_and_string_signal() -> None:
    decoder = array_decoder(ts_unit="rfc3339")
    payload = '[{"ts": "2023-11-14T22:13:10Z", "value": "on"}, {"ts": "x", "value": "off"}]'
    batch, events, quarantined = run(decoder, ("hf/press-3/state", payload),
                                     ("hf/press-3/force", '{"ts": ["2023-11-14T22:13:10Z"], '
                                                          '"value": [3]}'))
    assert events == [Event(1_699_999_990 * 10**9, "press-3", "state", "on")]
    assert batch.ts_ns.tolist() == [1_699_999_990 * 10**9]
    assert [q.reason for q in quarantined] == [
        "item 1: bad timestamp: 'x' is not an RFC 3339 timestamp"]


# ---------------------------------------------------------------- timestamps

@pytest.mark.parametrize(("sub", "ts", "reason"), [
    ({}, "1700000000", "timestamp 1700000000 in ms is 1970-01-20T16:13:20Z, before "
     "2000-01-01; it looks like seconds, set ts_unit: s"),
    ({}, str(TS_MS + 311_000), f"timestamp {TS_MS + 311_000} in ms is 2023-11-14T22:18:21Z, "
     "more than 300 s in the future"),
    ({"ts_unit": "s"}, str(TS_MS), f"timestamp {TS_MS} in s is about year 55841, more "
     "than 300 s in the future; it looks like milliseconds, set ts_unit: ms"),
    ({}, '"2023-11-14T22:13:10Z"', "expected a timestamp number, found string "
     "'2023-11-14T22:13:10Z'; it looks like RFC 3339, set ts_unit: rfc3339"),
    ({}, "true", "expected a timestamp number, found bool true"),
    ({"ts_unit": "rfc3339"}, "1", "expected an RFC 3339 timestamp string, found number 1"),
    ({"ts_unit": "rfc3339"}, '"2023-11-14T22:13:10"', "bad timestamp: '2023-11-14T22:13:10' "
     "is not an RFC 3339 timestamp"),
    ({"ts_unit": "rfc3339"}, '"2099-01-01T00:00:00Z"', "timestamp '2099-01-01T00:00:00Z' is "
     "more than 300 s in the future"),
])
def test_bad_timestamps_are_quarantined(sub: dict[str, Any], ts: str, reason: str) -> None:
    result = run(value_decoder(**sub), ("plant/l1/press-3/force", f'{{"value": 1, "ts": {ts}}}'))
    assert one_reason(result) == reason


# ---------------------------------------------------------------- limits

@pytest.fixture
def no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_: bytes) -> Any:
        raise AssertionError("the JSON parser must not be called")
    monkeypatch.setattr(orjson, "loads", refuse)


@pytest.mark.usefixtures("no_parsing")
def test_oversized_payload_is_rejected_without_parsing() -> None:
    payload = b"\x00garbage" * (10 * 1024 * 1024 // 8)
    result = run(value_decoder(), ("plant/l1/press-3/force", payload))
    assert one_reason(result) == "payload of 10485760 bytes exceeds max_payload_bytes 262144"
    assert result[2][0].head == payload[:256]


@pytest.mark.usefixtures("no_parsing")
def test_deep_nesting_is_rejected_without_parsing() -> None:
    payload = b'{"value": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    result = run(array_decoder(), ("hf/press-3/force", payload))
    assert one_reason(result) == "JSON nesting depth 10001 exceeds max_json_depth 16"


def test_strings_full_of_brackets_are_not_too_deep() -> None:
    payload = orjson.dumps({"value": 3, "note": "[" * 100 + '\\"{' * 50})
    batch, _, quarantined = run(value_decoder(), ("plant/l1/press-3/force", payload))
    assert (batch.value.tolist(), quarantined) == ([3.0], [])


def test_quarantine_record_carries_source_topic_time_and_head() -> None:
    payload = b'{"value": "' + b"x" * 1000 + b'"}'
    [record] = run(value_decoder(), ("plant/l1/press-3/force", payload))[2]
    assert record == QuarantineRecord(RX_NS, "mqtt-a", "plant/l1/press-3/force", payload[:256],
                                      "expected a number, found string '" + "x" * 40 + "...'",
                                      sid("press-3", "force"))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64) | st.from_regex(rb"[\[\]{}\"\\0-9a-z:,. -]{0,40}",
                                                        fullmatch=True), max_size=5),
       st.sampled_from(["number", "value", "array"]))
def test_decode_never_raises(payloads: Sequence[bytes], fmt: str) -> None:
    decoder = make({"topic": "t/{machine}/{signal}", "format": fmt},
                   {"topic": "o/{machine}", "format": "object"})
    messages = [(f"t/press-3/{'force' if i % 2 else 'state'}", p)
                for i, p in enumerate(payloads)] + [("o/cnc-1", p) for p in payloads]
    _, _, quarantined = run(decoder, *messages)
    assert not any(q.reason.startswith("decoder error") for q in quarantined)
