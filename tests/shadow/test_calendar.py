"""shadow.calendar: shift instances, planned stops and days in UTC from local-time
rules (midnight, weekdays, the spring DST change in Europe/Paris), and the planned-stop
schedule the model asks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from shadow.calendar import (
    DAY_NS,
    PlannedSchedule,
    PlannedStop,
    days,
    from_ns,
    planned_stops,
    shifts,
    to_ns,
)
from shadow.config import CalendarConfig
from shadow.timeline import NS_PER_S, Window

HOUR = 3600 * NS_PER_S


def utc(*args: int) -> int:
    return to_ns(datetime(*args, tzinfo=UTC))


def calendar(**fields: Any) -> CalendarConfig:
    return CalendarConfig.model_validate(fields)


def spans(windows: list[Window]) -> list[tuple[datetime, datetime]]:
    return [(from_ns(w.start_ns), from_ns(w.end_ns)) for w in windows]


def dt(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_to_ns_and_from_ns_round_trip() -> None:
    ts = datetime(2026, 3, 2, 6, 15, 30, 123456, tzinfo=UTC)
    assert to_ns(ts) == 1_772_432_130_123_456_000
    assert from_ns(to_ns(ts)) == ts


def test_shift_crossing_midnight_ends_the_next_day() -> None:
    cal = calendar(shifts=[{"name": "night", "start": "22:00", "end": "06:00",
                            "days": ["mon"]}])
    # Monday 2026-03-02; the window is Tuesday morning only.
    found = shifts(cal, Window(utc(2026, 3, 3, 1), utc(2026, 3, 3, 2)))
    assert [(s.name, s.day) for s in found] == [("night", date(2026, 3, 2))]
    assert spans([found[0].window]) == [(dt(2026, 3, 2, 22), dt(2026, 3, 3, 6))]


def test_shifts_in_start_order_and_only_on_their_weekdays() -> None:
    cal = calendar(shifts=[{"name": "late", "start": "14:00", "end": "22:00"},
                           {"name": "early", "start": "06:00", "end": "14:00"},
                           {"name": "weekend", "start": "08:00", "end": "12:00",
                            "days": ["sat"]}])
    # Friday 2026-03-06 to Monday 2026-03-09, 00:00 UTC.
    found = shifts(cal, Window(utc(2026, 3, 6), utc(2026, 3, 9)))
    assert [(s.name, s.day.isoformat()) for s in found] == [
        ("early", "2026-03-06"), ("late", "2026-03-06"), ("weekend", "2026-03-07")]
    assert spans([found[2].window]) == [(dt(2026, 3, 7, 8), dt(2026, 3, 7, 12))]


def test_shifts_overlapping_the_window_are_returned_unclipped() -> None:
    cal = calendar(shifts=[{"name": "early", "start": "06:00", "end": "14:00"}])
    found = shifts(cal, Window(utc(2026, 3, 2, 13), utc(2026, 3, 2, 15)))
    assert spans([s.window for s in found]) == [(dt(2026, 3, 2, 6), dt(2026, 3, 2, 14))]
    # A window that only touches the shift's end does not overlap it.
    assert shifts(cal, Window(utc(2026, 3, 2, 14), utc(2026, 3, 2, 15))) == []


def test_dst_day_in_paris_moves_the_shift_an_hour_earlier_in_utc() -> None:
    cal = calendar(timezone="Europe/Paris", shifts=[
        {"name": "early", "start": "06:00", "end": "14:00", "days": ["sat", "sun"]}])
    found = shifts(cal, Window(utc(2026, 3, 28), utc(2026, 3, 30)))
    assert [s.day for s in found] == [date(2026, 3, 28), date(2026, 3, 29)]
    # CET (+01:00) on Saturday, CEST (+02:00) from Sunday 2026-03-29 02:00.
    assert spans([s.window for s in found]) == [
        (dt(2026, 3, 28, 5), dt(2026, 3, 28, 13)), (dt(2026, 3, 29, 4), dt(2026, 3, 29, 12))]


def test_night_shift_over_the_dst_change_lasts_seven_hours() -> None:
    cal = calendar(timezone="Europe/Paris", shifts=[
        {"name": "night", "start": "22:00", "end": "06:00", "days": ["sat"]}])
    (night,) = shifts(cal, Window(utc(2026, 3, 28, 12), utc(2026, 3, 29, 12)))
    assert night.window.end_ns - night.window.start_ns == 7 * HOUR
    assert spans([night.window]) == [(dt(2026, 3, 28, 21), dt(2026, 3, 29, 4))]


def test_autumn_dst_change_makes_a_nine_hour_night_and_a_25_hour_day() -> None:
    cal = calendar(timezone="Europe/Paris", shifts=[
        {"name": "night", "start": "22:00", "end": "06:00", "days": ["sat"]}])
    (night,) = shifts(cal, Window(utc(2026, 10, 24, 12), utc(2026, 10, 25, 12)))
    assert spans([night.window]) == [(dt(2026, 10, 24, 20), dt(2026, 10, 25, 5))]
    assert night.window.end_ns - night.window.start_ns == 9 * HOUR
    found = days(cal, Window(utc(2026, 10, 24, 22), utc(2026, 10, 25, 23)))
    assert spans(found) == [(dt(2026, 10, 24, 22), dt(2026, 10, 25, 23))]
    assert found[0].end_ns - found[0].start_ns == 25 * HOUR


def test_days_are_local_days_clipped_to_the_window() -> None:
    cal = calendar(timezone="Europe/Paris")
    found = days(cal, Window(utc(2026, 3, 28, 12), utc(2026, 3, 30, 12)))
    assert spans(found) == [
        (dt(2026, 3, 28, 12), dt(2026, 3, 28, 23)),
        (dt(2026, 3, 28, 23), dt(2026, 3, 29, 22)),  # the 23-hour DST day
        (dt(2026, 3, 29, 22), dt(2026, 3, 30, 12)),
    ]
    assert found[1].end_ns - found[1].start_ns == 23 * HOUR


def test_days_in_utc_are_whole_utc_days() -> None:
    found = days(calendar(), Window(utc(2026, 3, 2), utc(2026, 3, 4)))
    assert spans(found) == [(dt(2026, 3, 2), dt(2026, 3, 3)), (dt(2026, 3, 3), dt(2026, 3, 4))]


def test_recurring_planned_stop_on_its_days_only() -> None:
    cal = calendar(timezone="Europe/Paris", planned_stops=[
        {"reason": "lunch", "start": "12:00", "end": "12:30", "days": ["mon", "wed"]}])
    found = planned_stops(cal, Window(utc(2026, 3, 2), utc(2026, 3, 5)))  # Mon to Wed
    assert [(s.reason, s.machine) for s in found] == [("lunch", None), ("lunch", None)]
    assert spans([s.window for s in found]) == [
        (dt(2026, 3, 2, 11), dt(2026, 3, 2, 11, 30)), (dt(2026, 3, 4, 11), dt(2026, 3, 4, 11, 30))]


def test_dated_planned_stop_one_per_machine_named() -> None:
    cal = calendar(planned_stops=[
        {"reason": "maintenance", "from": "2026-03-02T10:00:00+01:00",
         "to": "2026-03-02T11:30:00+01:00", "machines": ["press-1", "press-2"]}])
    found = planned_stops(cal, Window(utc(2026, 3, 2), utc(2026, 3, 3)))
    window = Window(utc(2026, 3, 2, 9), utc(2026, 3, 2, 10, 30))
    assert found == [PlannedStop("maintenance", "press-1", window),
                     PlannedStop("maintenance", "press-2", window)]
    assert planned_stops(cal, Window(utc(2026, 3, 3), utc(2026, 3, 4))) == []


def test_planned_stops_are_sorted_by_start() -> None:
    cal = calendar(planned_stops=[
        {"reason": "break", "start": "09:00", "end": "09:15"},
        {"reason": "meeting", "from": "2026-03-02T07:00:00Z", "to": "2026-03-02T07:30:00Z"}])
    found = planned_stops(cal, Window(utc(2026, 3, 2), utc(2026, 3, 3)))
    assert [s.reason for s in found] == ["meeting", "break"]


def test_schedule_inside_for_the_machines_named() -> None:
    cal = calendar(planned_stops=[
        {"reason": "maintenance", "from": "2026-03-02T10:00:00Z", "to": "2026-03-02T11:00:00Z",
         "machines": ["press-1"]},
        {"reason": "lunch", "start": "12:00", "end": "12:30"}])
    schedule = PlannedSchedule(cal)
    assert schedule.inside("press-1", utc(2026, 3, 2, 10))
    assert schedule.inside("press-1", utc(2026, 3, 2, 11) - 1)
    assert not schedule.inside("press-1", utc(2026, 3, 2, 11))  # the end is outside
    assert not schedule.inside("press-1", utc(2026, 3, 2, 10) - 1)
    assert not schedule.inside("press-2", utc(2026, 3, 2, 10, 30))
    assert schedule.inside("press-2", utc(2026, 3, 2, 12, 15))  # every machine


def test_schedule_without_planned_stops_is_never_inside() -> None:
    schedule = PlannedSchedule(calendar(shifts=[{"name": "a", "start": "06:00",
                                                 "end": "14:00"}]))
    assert not schedule.inside("press-1", utc(2026, 3, 2, 10))
    assert schedule.boundaries("press-1", utc(2026, 3, 2), utc(2026, 3, 3)) == []


def test_schedule_boundaries_in_half_open_range() -> None:
    cal = calendar(planned_stops=[{"reason": "lunch", "start": "12:00", "end": "12:30"}])
    schedule = PlannedSchedule(cal)
    noon, half = utc(2026, 3, 2, 12), utc(2026, 3, 2, 12, 30)
    assert schedule.boundaries("m", utc(2026, 3, 2), utc(2026, 3, 3)) == [noon, half]
    assert schedule.boundaries("m", noon, half) == [half]  # (a, b]: a excluded, b included
    assert schedule.boundaries("m", noon - 1, noon) == [noon]
    assert schedule.boundaries("m", half, half) == []
    assert schedule.boundaries("m", half, noon) == []
    # Over several days, every edge once, in order.
    edges = schedule.boundaries("m", utc(2026, 3, 2), utc(2026, 3, 5))
    assert edges == sorted({noon + d * DAY_NS for d in range(3)} | {half + d * DAY_NS
                                                                   for d in range(3)})


def test_schedule_stop_across_midnight() -> None:
    cal = calendar(planned_stops=[{"reason": "night", "start": "23:00", "end": "01:00",
                                   "days": ["mon"]}])
    schedule = PlannedSchedule(cal)
    start, end = utc(2026, 3, 2, 23), utc(2026, 3, 3, 1)
    assert schedule.inside("m", utc(2026, 3, 3, 0, 30))
    assert not schedule.inside("m", end)
    assert schedule.boundaries("m", start - 1, end + 1) == [start, end]
    assert schedule.boundaries("m", utc(2026, 3, 3), end) == [end]


def test_schedule_answers_stay_right_beyond_its_cache() -> None:
    cal = calendar(planned_stops=[{"reason": "lunch", "start": "12:00", "end": "12:30"}])
    schedule = PlannedSchedule(cal)
    base = datetime(2026, 3, 2, 12, 15, tzinfo=UTC)
    for day in [*range(20), *range(20)]:
        t = to_ns(base + timedelta(days=day))
        assert schedule.inside("m", t)
        assert not schedule.inside("m", t + HOUR)
