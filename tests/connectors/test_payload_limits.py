"""Limits checked before a payload is parsed: its size and its JSON nesting depth.
Pure: no decoder, no broker."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.payload_limits import json_depth_over, load_json, size_reason
from connectors.reject import Reject


def test_size_reason_names_the_limit() -> None:
    assert size_reason(0, 64) == "empty payload"
    assert size_reason(65, 64) == "payload of 65 bytes exceeds max_payload_bytes 64"


@pytest.mark.parametrize(("text", "depth"), [
    (b"[]", 0),
    (b"[[[[[[]]]]]]", 6),
    (b'{"a": "[[[[[[[[", "b": [[1]]}', 0),
    (b'{"a": "\\"[[[[[[[[\\\\", "b": [[[[[[1]]]]]]}', 7),
    (b'[{"a": 1}, {"a": 2}, {"a": 3}, {"a": 4}, {"a": 5}, {"a": 6}]', 0),
    (b"]]]]]][[[[[[[", 1),  # malformed: left to the parser
])
def test_json_depth_ignores_brackets_in_strings(text: bytes, depth: int) -> None:
    assert json_depth_over(text, 5) == (depth if depth > 5 else 0)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(alphabet='[]{}"\\ab\n'),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(alphabet='[]{}"\\k', max_size=3), inner, max_size=4),
    max_leaves=30)


def true_depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(true_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(true_depth, value.values()), default=0)
    return 0


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_json_depth_matches_the_parsed_depth(value: object) -> None:
    depth = true_depth(value)
    assert json_depth_over(orjson.dumps(value), 0) == depth
    assert json_depth_over(orjson.dumps(value, option=orjson.OPT_INDENT_2), depth) == 0


def test_load_json_parses_within_the_depth_limit() -> None:
    assert load_json(b'{"a": [[1]]}', 3) == {"a": [[1]]}


@pytest.mark.parametrize(("payload", "reason"), [
    (b'{"a": [[1]]}', "JSON nesting depth 3 exceeds max_json_depth 2"),
    (b'{"a": 1', "malformed JSON: "),
    (b"NaN", "malformed JSON: "),
])
def test_load_json_rejects(payload: bytes, reason: str) -> None:
    with pytest.raises(Reject) as info:
        load_json(payload, 2)
    assert info.value.reason.startswith(reason)


def test_too_deep_json_is_never_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_: bytes) -> Any:
        raise AssertionError("the JSON parser must not be called")
    monkeypatch.setattr(orjson, "loads", refuse)
    with pytest.raises(Reject, match="nesting depth 4"):
        load_json(b"[[[[]]]]", 3)
