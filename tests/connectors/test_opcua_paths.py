"""Browse-path patterns: levels, globs within a level, `**`, and the placeholders."""

from __future__ import annotations

import pytest

from connectors.opcua_paths import PathPattern


@pytest.mark.parametrize(("pattern", "path", "expected"), [
    ("Objects/Machines/{machine}/Counters/{signal}", "Objects/Machines/P1/Counters/Good",
     {"machine": "P1", "signal": "Good"}),
    ("Objects/Machines/{machine}/Counters/{signal}", "Objects/Machines/P1/x/Counters/Good", None),
    ("Objects/Machines/*/Counters/*", "Objects/Machines/P1/Counters/Good", {}),
    ("Objects/Machines/*", "Objects/Machines/P1/Counters", None),  # * stays in its level
    ("Objects/Press?", "Objects/Press1", {}),
    ("Objects/a.b", "Objects/axb", None),  # only * and ? are special
    ("**/Temp*", "Objects/a/b/Temperature", {}),
    ("**/Temp*", "Objects/a/b/MouldTemp", None),
    ("Objects/**/Temp", "Objects/Temp", {}),
    ("Objects/**/Temp", "Objects/a/b/Temp", {}),
    ("Objects/{machine}/**/{signal}", "Objects/P1/Monitoring/Speed",
     {"machine": "P1", "signal": "Speed"}),
    ("Objects/**", "Objects", {}),
])
def test_match(pattern: str, path: str, expected: dict[str, str] | None) -> None:
    assert PathPattern.parse(pattern).match(path) == expected


@pytest.mark.parametrize(("pattern", "message"), [
    ("Objects//x", "expected browse names separated by single '/'"),
    ("Objects/{line}", "found '{line}'"),
    ("Objects/{machine}/{machine}", "at most one each of {machine} and {signal}"),
    ("Objects/M{machine}", "each a whole level, found 'M{machine}'"),
])
def test_bad_patterns(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        PathPattern.parse(pattern)
