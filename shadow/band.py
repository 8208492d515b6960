"""A machine's state band over a window, as the KPIs see its time: every instant of the
window up to now falls in exactly one segment. Pure: the API's timeline endpoint builds
it from the store's intervals, the calendar and the coverage.

The rules are those of `shadow.time_elements.machine_time`: inside the planned operating
time, a planned stop is PDOT whatever the machine said; a state interval (the open one
included) is its category; a silent spell, or time with no interval while the gateway
ran, is *unknown*; time with no interval is *no data* before a machine's first reading
or while the gateway was not running; time outside every shift is *off* (not planned to
operate)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from shadow.states import UNKNOWN
from shadow.time_elements import Span, intersect, normalise, subtract
from shadow.timeline import Category

Kind = Literal["state", "planned_stop", "unknown", "no_data", "off"]


@dataclass(frozen=True, slots=True)
class Segment:
    """[start_ns, end_ns) of the band. For a `state` segment, the interval it comes
    from: its row id (None for the open interval, still growing), the machine's raw
    state, job and reason; `planned` when a planned stop made it PDOT."""

    start_ns: int
    end_ns: int
    kind: Kind
    category: Category | None
    state: str | None = None
    id: int | None = None
    open: bool = False
    planned: bool = False
    job: str | None = None
    reason: str | None = None
    reason_source: str | None = None
    reason_raw: str | None = None


def band(window: Span, intervals: Sequence[Segment], shifts: Sequence[Span] | None,
         stops: Sequence[Span], covered: Sequence[Span]) -> list[Segment]:
    """The segments of one machine over `window`, in time order, from its disjoint
    `state` segments (its intervals), the shifts (None: all time is planned), its
    planned stops and the time its data covers (shadow.coverage)."""
    whole = [window] if window[0] < window[1] else []
    pot = whole if shifts is None else intersect(whole, normalise(shifts))
    planned = intersect(pot, normalise(stops))
    out: list[Segment] = []
    for given in intervals:
        silent = given.category is None and given.state == UNKNOWN.raw  # a silent spell
        iv = replace(given, kind="unknown") if silent else given
        span = intersect(whole, [(iv.start_ns, iv.end_ns)])
        stopped = intersect(span, planned)
        out += [replace(iv, start_ns=s, end_ns=e, category=Category.PDOT, planned=True)
                for s, e in stopped]
        out += [replace(iv, start_ns=s, end_ns=e) for s, e in subtract(span, stopped)]
    gaps = subtract(whole, normalise((iv.start_ns, iv.end_ns) for iv in intervals))
    in_pot = subtract(intersect(gaps, pot), planned)
    data = normalise(covered)
    parts: list[tuple[Kind, Category | None, list[Span]]] = [
        ("planned_stop", Category.PDOT, intersect(gaps, planned)),
        ("off", None, subtract(gaps, pot)),
        ("unknown", None, intersect(in_pot, data)),
        ("no_data", None, subtract(in_pot, data)),
    ]
    out += [Segment(s, e, kind, category) for kind, category, spans in parts for s, e in spans]
    return sorted(out, key=lambda seg: seg.start_ns)
