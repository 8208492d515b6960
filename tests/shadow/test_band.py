"""The band: every instant of the window in one segment, by the KPIs' rules."""

from __future__ import annotations

from shadow.band import Segment, band
from shadow.timeline import Category

MIN = 60 * 10**9


def state(start: int, end: int, category: Category | None, name: str, **more: object) -> Segment:
    return Segment(start * MIN, end * MIN, "state", category, name, **more)  # type: ignore[arg-type]


def spans(segments: list[Segment]) -> list[tuple[int, int, str, str | None, str | None]]:
    return [(s.start_ns // MIN, s.end_ns // MIN, s.kind, s.category, s.state) for s in segments]


def test_the_band_covers_the_window_in_time_order() -> None:
    """Shift 0-480 from 0 to 300 (now): no data until the first reading at 50, a setup
    and a run, a silent spell (unknown), a planned stop inside the run, and the open
    interval, growing, to 290; then no data (the gateway's data stops at 290). A silent
    spell the shadow wrote as a state is unknown too."""
    intervals = [state(50, 82, Category.ASUT, "SETUP", id=1),
                 state(82, 200, Category.APT, "RUNNING", id=2),
                 state(200, 210, None, "unknown", id=3),
                 state(220, 290, Category.APT, "RUNNING", open=True)]
    got = band((0, 300 * MIN), intervals, [(0, 480 * MIN)], [(150 * MIN, 160 * MIN)],
               [(50 * MIN, 290 * MIN)])
    assert spans(got) == [
        (0, 50, "no_data", None, None),
        (50, 82, "state", "ASUT", "SETUP"),
        (82, 150, "state", "APT", "RUNNING"),
        (150, 160, "state", "PDOT", "RUNNING"),
        (160, 200, "state", "APT", "RUNNING"),
        (200, 210, "unknown", None, "unknown"),
        (210, 220, "unknown", None, None),
        (220, 290, "state", "APT", "RUNNING"),
        (290, 300, "no_data", None, None),
    ]
    assert [s.id for s in got[1:5]] == [1, 2, 2, 2]
    assert [s.planned for s in got[2:5]] == [False, True, False]
    assert (got[7].open, got[7].id) == (True, None)


def test_planned_stops_outside_data_and_time_off_shift() -> None:
    """A planned stop with no data is PDOT (it is planned, data or not); time outside
    every shift is off; an interval clipped to the window."""
    got = band((0, 100 * MIN), [state(-30, 20, Category.ADOT, "IDLE", id=7)],
               [(0, 80 * MIN)], [(40 * MIN, 60 * MIN)], [(-30 * MIN, 30 * MIN)])
    assert spans(got) == [
        (0, 20, "state", "ADOT", "IDLE"),
        (20, 30, "unknown", None, None),
        (30, 40, "no_data", None, None),
        (40, 60, "planned_stop", "PDOT", None),
        (60, 80, "no_data", None, None),
        (80, 100, "off", None, None),
    ]


def test_no_shifts_means_all_time_is_planned_and_an_empty_window_has_no_segment() -> None:
    assert spans(band((0, 10 * MIN), [], None, [], [])) == [(0, 10, "no_data", None, None)]
    assert band((5 * MIN, 5 * MIN), [state(0, 10, Category.APT, "RUN")], None, [], []) == []
