"""The shift calendar as concrete windows: shift instances, planned stops and days,
in UTC nanoseconds, computed from the config's local-time rules. Pure functions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from shadow.config import WEEKDAYS, CalendarConfig, Weekday
from shadow.timeline import NS_PER_S, Window


@dataclass(frozen=True, slots=True)
class Shift:
    name: str
    day: date  # the local day the shift starts on
    window: Window


@dataclass(frozen=True, slots=True)
class PlannedStop:
    reason: str
    machine: str | None  # None: every machine
    window: Window


def to_ns(ts: datetime) -> int:
    """An aware datetime as int nanoseconds since the epoch (exact to the microsecond)."""
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * NS_PER_S + delta.microseconds * 1000


def from_ns(ns: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)


def rfc3339(ns: int, timespec: str = "auto") -> str:
    """`ns` as RFC 3339 in UTC with a Z, e.g. 2026-03-02T06:00:00Z."""
    return from_ns(ns).isoformat(timespec=timespec).replace("+00:00", "Z")


def _local_days(window: Window, zone: ZoneInfo) -> Iterator[date]:
    """Every local day that may hold a window part, from the day before (for shifts
    that cross midnight) to the last day."""
    day = from_ns(window.start_ns).astimezone(zone).date() - timedelta(days=1)
    last = from_ns(window.end_ns).astimezone(zone).date()
    while day <= last:
        yield day
        day += timedelta(days=1)


def _span(day: date, start: time, end: time, zone: ZoneInfo) -> Window:
    begin = datetime.combine(day, start, zone)
    finish = datetime.combine(day + timedelta(days=1) if end <= start else day, end, zone)
    return Window(to_ns(begin), to_ns(finish))


def _overlaps(a: Window, b: Window) -> bool:
    return a.start_ns < b.end_ns and b.start_ns < a.end_ns


def _weekday(day: date) -> Weekday:
    return WEEKDAYS[day.weekday()]


def shifts(calendar: CalendarConfig, window: Window) -> list[Shift]:
    """The shift instances that overlap `window`, in start order, unclipped."""
    zone = ZoneInfo(calendar.timezone)
    found = [Shift(s.name, day, _span(day, s.start, s.end, zone))
             for day in _local_days(window, zone) for s in calendar.shifts
             if _weekday(day) in s.days]
    return sorted((s for s in found if _overlaps(s.window, window)),
                  key=lambda s: s.window.start_ns)


def planned_stops(calendar: CalendarConfig, window: Window) -> list[PlannedStop]:
    """The planned stops that overlap `window`, unclipped, one per machine named (or
    one with machine None for all)."""
    zone = ZoneInfo(calendar.timezone)
    found: list[PlannedStop] = []
    for stop in calendar.planned_stops:
        if stop.start is not None and stop.end is not None:
            spans = [_span(day, stop.start, stop.end, zone) for day in _local_days(window, zone)
                     if _weekday(day) in stop.days]
        elif stop.from_ is not None and stop.to is not None:
            spans = [Window(to_ns(stop.from_), to_ns(stop.to))]
        for span in spans:
            if _overlaps(span, window):
                machines: list[str | None] = [*stop.machines] or [None]
                found += [PlannedStop(stop.reason, m, span) for m in machines]
    return sorted(found, key=lambda s: s.window.start_ns)


def days(calendar: CalendarConfig, window: Window) -> list[Window]:
    """The local calendar days that overlap `window`, each clipped to it."""
    zone = ZoneInfo(calendar.timezone)
    found = []
    for day in _local_days(window, zone):
        span = _span(day, time(0), time(0), zone)
        if _overlaps(span, window):
            found.append(Window(max(span.start_ns, window.start_ns),
                                min(span.end_ns, window.end_ns)))
    return found


DAY_NS = 86_400 * NS_PER_S
SCHEDULE_CACHE_DAYS = 8


class PlannedSchedule:
    """Answers the model's questions about planned stops (is `t` inside one, which
    edges lie in (a, b]) from the calendar, a few UTC days at a time, cached."""

    def __init__(self, calendar: CalendarConfig) -> None:
        self._calendar = calendar
        self._days: dict[int, list[PlannedStop]] = {}

    def _stops(self, day: int) -> list[PlannedStop]:
        if day not in self._days:
            if len(self._days) >= SCHEDULE_CACHE_DAYS:
                del self._days[next(iter(self._days))]
            self._days[day] = planned_stops(self._calendar,
                                            Window(day * DAY_NS, (day + 1) * DAY_NS))
        return self._days[day]

    def _for(self, machine: str, day: int) -> Iterator[Window]:
        return (s.window for s in self._stops(day) if s.machine in (None, machine))

    def inside(self, machine: str, t: int) -> bool:
        return bool(self._calendar.planned_stops) and any(
            w.start_ns <= t < w.end_ns for w in self._for(machine, t // DAY_NS))

    def boundaries(self, machine: str, a: int, b: int) -> list[int]:
        if not self._calendar.planned_stops or b <= a:
            return []
        edges = {e for day in range(a // DAY_NS, b // DAY_NS + 1)
                 for w in self._for(machine, day) for e in (w.start_ns, w.end_ns) if a < e <= b}
        return sorted(edges)
