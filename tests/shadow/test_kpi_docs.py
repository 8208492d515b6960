"""docs/kpi.md's worked examples, read from the page and recomputed: the page cannot
drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shadow.coverage import Coverage
from shadow.kpi import KpiResult, compute
from shadow.timeline import Category, Interval, OrderPlan, Window
from tests.shadow.test_kpi import MIN, M, at, example_counts

PAGE = (Path(__file__).parents[2] / "docs" / "kpi.md").read_text()
SHIFT = Window(at("06:00"), at("14:00"))


def section(title: str) -> str:
    start = PAGE.index(title)
    end = PAGE.find("\n#", start + len(title))
    return PAGE[start:] if end < 0 else PAGE[start:end]


def rows(text: str, header: str) -> list[list[str]]:
    """The rows of the table of `text` whose header starts with `header`."""
    lines = text[text.index(header):].splitlines()[2:]
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in lines if line.startswith("|")]


def table_until_blank(text: str, header: str) -> list[list[str]]:
    body = text[text.index(header):].split("\n\n", maxsplit=1)[0]
    return rows(body, header)


def shift() -> tuple[list[Interval], list[Window]]:
    """The events table: intervals of order A, a planned stop for the PDOT row."""
    intervals, stops = [], []
    for when, event, category in table_until_blank(section("## Worked example"),
                                                    "| time | event"):
        start, end = (at(hhmm) for hhmm in when.split("\u2013"))
        name = category.split()[0]
        if name == "PDOT":
            stops.append(Window(start, end))
            continue
        job = None if name == "ADOT" else "A"
        intervals.append(Interval(M, start, end, Category(name), "failure" in event, job))
    return intervals, stops


def pru_s() -> float:
    found = re.search(r"PRU = ([\d.]+) min per part", section("## Worked example"))
    assert found is not None
    return float(found.group(1)) * 60


def kpis_of(result: KpiResult) -> dict[str, float | None]:
    return {name: r.value for name, r in result.kpis.items()} | {
        "unclassified_share": result.unclassified_share.value,
        "coverage": result.coverage.value}


def documented(title: str) -> dict[str, float]:
    return {name: float(value) for name, value, _ in
            table_until_blank(section(title), "| KPI | value")}


def run(coverage: Coverage | None, intervals: list[Interval]) -> KpiResult:
    _, stops = shift()
    return compute(SHIFT, [M], intervals, example_counts(),
                   {"A": OrderPlan(pru_s(), planned_qty=480, planned_scrap_qty=10)},
                   planned_stops={M: stops}, coverage=coverage)


def test_the_worked_example_matches_to_1e_6() -> None:
    intervals, _ = shift()
    result = run(Coverage([SHIFT], {M: at("06:00")}), intervals)
    expected = documented("## Worked example")
    assert len(expected) == 19
    assert {k: kpis_of(result)[k] for k in expected} == pytest.approx(expected, abs=1e-6)
    derived = re.search(r"Derived times: (.*?)\n\(min\)", PAGE, re.S)
    assert derived is not None
    for name, minutes in re.findall(r"(\w+) = (\d+)", derived.group(1)):
        assert result.time.named()[name] == int(minutes) * MIN
    losses = re.search(r"Losses: availability (\d+) min, performance (\d+) min, quality "
                       r"(\d+) min .*?fully\nproductive (\d+) min", PAGE, re.S)
    assert losses is not None
    got = result.losses
    assert [got.availability_s, got.performance_s, got.quality_s, got.fully_productive_s] \
        == pytest.approx([int(n) * 60 for n in losses.groups()], abs=1e-6)


def test_the_example_with_the_gateway_started_late_matches_to_1e_6() -> None:
    intervals, _ = shift()
    late = Coverage([Window(at("06:15"), at("14:00"))], {M: at("06:15")})
    heard = [iv for iv in intervals if iv.start_ns >= at("06:15")]
    result = run(late, heard)
    expected = documented("### The same shift, with the gateway started at 06:15")
    assert {k: kpis_of(result)[k] for k in expected} == pytest.approx(expected, abs=1e-6)
    assert result.time.nodata_ns == 15 * MIN
    # Heard at 06:00, then silent until 06:15: unknown, not no data.
    silent = [Interval(M, at("06:00"), at("06:00") + 1, Category.ADOT), *heard]
    unknown = kpis_of(run(Coverage([SHIFT], {M: at("06:00")}), silent))
    assert unknown["availability"] == pytest.approx(0.866667, abs=1e-6)
    assert unknown["unclassified_share"] == pytest.approx(0.033333, abs=1e-6)
    assert unknown["coverage"] == 1
