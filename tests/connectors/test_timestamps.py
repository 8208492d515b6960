"""Payload timestamps: RFC 3339 parsing, the accepted window, and the array fast path
agreeing with the item-by-item conversion. Pure: no decoder, no broker."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.reject import Reject
from connectors.timestamps import TsLimits, TsWindow, parse_rfc3339
from gateway.config import LimitsConfig
from gateway.types import Quality

NOW_NS = 1_700_000_000 * 10**9  # 2023-11-14T22:13:20Z
Y2K_NS = 946_684_800 * 10**9


def window(**limits: object) -> TsWindow:
    return TsLimits.from_config(LimitsConfig.model_validate(limits)).window(NOW_NS)


@pytest.mark.parametrize(("text", "ns"), [
    ("1970-01-01T00:00:00Z", 0),
    ("2023-11-14T22:13:20z", NOW_NS),
    ("2023-11-14 23:13:20+01:00", NOW_NS),
    ("2023-11-14t21:43:20-00:30", NOW_NS),
    ("2023-11-14T22:13:20.1234567891234Z", NOW_NS + 123_456_789),  # beyond ns: cut
    ("2016-12-31T23:59:60Z", 1_483_228_800 * 10**9),  # a leap second is the next second
])
def test_parse_rfc3339_is_exact_to_the_nanosecond(text: str, ns: int) -> None:
    assert parse_rfc3339(text) == ns


@pytest.mark.parametrize(("text", "match"), [
    ("2023-13-01T00:00:00Z", "month must be in"),
    ("2023-02-29T00:00:00Z", "no such date"),
    ("2023-01-01T24:00:00Z", "no such time of day"),
    ("2023-01-01T00:00:00", "not an RFC 3339 timestamp"),  # no offset
    ("2023-01-01T00:00:00Z ", "not an RFC 3339 timestamp"),
])
def test_parse_rfc3339_rejects(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_rfc3339(text)


def test_limits_come_from_the_config_once() -> None:
    limits = TsLimits.from_config(LimitsConfig())
    assert (limits.oldest_ns, limits.oldest_text, limits.max_future_s) == (
        Y2K_NS, "2000-01-01", 300)
    assert window() == TsWindow(Y2K_NS, NOW_NS + 300 * 10**9, "2000-01-01", 300)
    assert window(oldest_ts="2020-06-01T12:00:00+02:00").oldest_text == "2020-06-01T10:00:00Z"


def test_reading_time_is_the_receive_time_when_the_payload_has_none() -> None:
    assert window().reading_time(None, "ms", 42) == (42, Quality.TS_RECEIVED)


@pytest.mark.parametrize(("raw", "unit", "ns"), [
    (Y2K_NS, "ns", Y2K_NS),  # both ends are inclusive
    (NOW_NS // 10**9 + 300, "s", NOW_NS + 300 * 10**9),
    (1_699_999_990.25, "s", 1_699_999_990_250_000_000),
    (1_699_999_990_123.5, "ms", 1_699_999_990_123_500_000),
    ("2023-11-14T22:13:10.5+00:00", "rfc3339", 1_699_999_990_500_000_000),
])
def test_reading_time_converts_in_range_timestamps(raw: object, unit: str, ns: int) -> None:
    assert window().reading_time(raw, unit, 0) == (ns, Quality.GOOD)


@pytest.mark.parametrize(("raw", "unit"), [
    (Y2K_NS - 1, "ns"), (NOW_NS + 300 * 10**9 + 1, "ns"), (True, "s"), ([1], "s"),
    (1.5, "rfc3339"), ("1999-12-31T23:59:59Z", "rfc3339"),
])
def test_reading_time_rejects(raw: object, unit: str) -> None:
    with pytest.raises(Reject):
        window().reading_time(raw, unit, 0)


in_window_ms = st.integers(Y2K_NS // 10**6 + 1, NOW_NS // 10**6 + 299_000)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["s", "ms", "us", "ns"]), st.booleans(),
       st.lists(st.tuples(in_window_ms, st.integers(0, 999)), min_size=1, max_size=20))
def test_column_agrees_with_reading_time(unit: str, floats: bool,
                                         items: list[tuple[int, int]]) -> None:
    scale = {"s": 1e-3, "ms": 1, "us": 10**3, "ns": 10**6}[unit]
    raw = ([t * scale + f / 1000 for t, f in items] if floats
           else [int(t * scale) for t, _ in items])
    ts = window()
    column = ts.column(raw, unit)
    assert column is not None
    assert column.tolist() == [ts.reading_time(t, unit, 0)[0] for t in raw]


def test_column_is_none_unless_every_item_is_a_number_in_the_window() -> None:
    ts = window()
    assert ts.column([NOW_NS // 10**6, NOW_NS], "ms") is None  # one in microseconds
    assert ts.column([NOW_NS // 10**6, "x"], "ms") is None
    assert ts.column([NOW_NS // 10**6, None], "ms") is None
    assert ts.column(["2023-11-14T22:13:10Z", "x"], "rfc3339") is None
    assert ts.column(["2023-11-14T22:13:10Z"], "rfc3339") is not None
