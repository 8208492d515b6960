"""Payload values to what a signal stores, and how reasons name what was found.
Pure: no decoder, no broker."""

from __future__ import annotations

import pytest

from connectors.payload_values import bare_number, event_value, number_column, number_value
from connectors.reject import Reject, describe


@pytest.mark.parametrize(("raw", "value"), [(1.5, 1.5), (-3, -3.0), (True, 1.0), (False, 0.0)])
def test_number_value_accepts_numbers_and_bools(raw: object, value: float) -> None:
    assert number_value(raw) == value


@pytest.mark.parametrize(("raw", "reason"), [
    (10**400, "value is not finite"),
    (float("inf"), "value is not finite"),
    (float("nan"), "value is not finite"),
    ("1.5", "expected a number, found string '1.5'"),
    (None, "expected a number, found null"),
])
def test_number_value_rejects(raw: object, reason: str) -> None:
    with pytest.raises(Reject) as info:
        number_value(raw)
    assert info.value.reason == reason


def test_event_value_keeps_strings_numbers_and_bools() -> None:
    assert [event_value(v) for v in ("on", 3, 2.5, True)] == ["on", 3, 2.5, True]
    with pytest.raises(Reject, match="expected a string, number or bool, found array"):
        event_value([1])


@pytest.mark.parametrize(("payload", "value"), [
    (b"21.5", 21.5), (b" 7\n", 7.0), (b"true", 1.0), (b" false ", 0.0), (b"1e3", 1000.0),
])
def test_bare_number(payload: bytes, value: float) -> None:
    assert bare_number(payload) == value


@pytest.mark.parametrize(("payload", "reason"), [
    (b"abc", "expected a number, found 'abc'"),
    (b"\xff" * 50, "expected a number, found '" + "\ufffd" * 40 + "...'"),
    (b"inf", "value is not finite"),
])
def test_bare_number_rejects(payload: bytes, reason: str) -> None:
    with pytest.raises(Reject) as info:
        bare_number(payload)
    assert info.value.reason == reason


def test_number_column_is_float64_or_none() -> None:
    column = number_column([1, 2.5, True])
    assert column is not None
    assert (column.dtype.name, column.tolist()) == ("float64", [1.0, 2.5, 1.0])
    for values in (["1.5"], [1, None], [[1], [2]], [1, {}]):
        assert number_column(values) is None


@pytest.mark.parametrize(("raw", "text"), [
    (None, "null"), (True, "bool true"), ("x" * 41, f"string '{'x' * 40}...'"),
    ({"a": 1}, "object"), ([], "array"), (2.5, "number 2.5"),
])
def test_describe_names_type_and_short_text(raw: object, text: str) -> None:
    assert describe(raw) == text
