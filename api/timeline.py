"""The state bands of the machine page and of the line Gantt: every machine's time over
a window as segments (shadow.band), the open interval included up to where the data
reaches, with the calendar's shifts and planned stops to draw beside them."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel

from api.deps import AsViewer, Config, Machines, Now, Store, config, now_ns, window
from shadow.band import Kind, band
from shadow.calendar import planned_stops, shifts
from shadow.timeline import NS_PER_S, Category, Window

router = APIRouter(tags=["machines"])
MAX_SEGMENTS = 50_000  # in one answer: a plant's year is ~10^5 intervals; narrow the range


class SegmentOut(BaseModel):
    """[start_ns, end_ns) of a band. `kind` is `state` (an interval of the machine's
    state: `state` is the machine's own name for it, `id` its row, null while it is the
    open interval, `open` true), `planned_stop` (a planned stop with no state known),
    `unknown` (the gateway ran, the machine was silent), `no_data` (no data: the
    gateway was not running, or before the machine's first reading) or `off` (outside
    every shift). `category` is the ISO 22400 category the KPIs count it in; `planned`
    is true when a planned stop made a state PDOT."""

    start_ns: int
    end_ns: int
    kind: Kind
    category: Category | None
    state: str | None
    id: int | None
    open: bool
    planned: bool
    job: str | None
    reason: str | None
    reason_source: str | None
    reason_raw: str | None


class SpanOut(BaseModel):
    start_ns: int
    end_ns: int
    name: str  # the shift's name, or the planned stop's reason


class MachineBandOut(BaseModel):
    id: str
    name: str | None
    line: str
    line_name: str | None
    segments: list[SegmentOut]
    planned_stops: list[SpanOut]  # the calendar's, over the whole window (later ones too)


class TimelineOut(BaseModel):
    """The window (`from_ns`, `to_ns`); segments reach `now_ns` at most; the plant's
    time zone (the calendar's), in which its shifts are named."""

    from_ns: int
    to_ns: int
    now_ns: int
    timezone: str
    shifts: list[SpanOut]
    machines: list[MachineBandOut]


async def shift_or_range(request: Request,
                         from_: Annotated[datetime | None, Query(alias="from")] = None,
                         to: Annotated[datetime | None, Query()] = None) -> Window:
    """`from`-`to` as every range (api.deps.window); without both, the whole shift
    running now (the last 8 hours when the calendar has none there)."""
    if from_ is not None or to is not None:
        return await window(request, from_, to)
    now = await now_ns(request)
    calendar = (await config(request)).shadow.calendar
    running = [s.window for s in shifts(calendar, Window(now, now + 1))
               if s.window.start_ns <= now < s.window.end_ns]
    return running[0] if running else Window(now - 8 * 3600 * NS_PER_S, now)


@router.get("/timeline")
def timeline(*, _: AsViewer, store: Store, config: Config, now: Now,
             span: Annotated[Window, Depends(shift_or_range)],
             machines: Machines) -> TimelineOut:
    """The band of one machine, of a line's machines, or of every machine (grouped by
    line) over `from`-`to`, by default the shift running now. Time after now has no
    segment."""
    calendar = config.shadow.calendar
    data = Window(span.start_ns, max(span.start_ns, min(span.end_ns, now)))
    found, coverage = store.band_intervals(data, [m.id for m in machines])
    calendar_shifts = shifts(calendar, span)
    stops = planned_stops(calendar, span)
    lines = {m.id: ln for site in config.sites for ln in site.all_lines() for m in ln.machines}
    out = []
    for m in machines:
        mine = [p for p in stops if p.machine in (None, m.id)]
        segments = band((data.start_ns, data.end_ns), found[m.id],
                        [(s.window.start_ns, s.window.end_ns) for s in calendar_shifts]
                        if calendar.shifts else None,
                        [(p.window.start_ns, p.window.end_ns) for p in mine],
                        coverage.covered(m.id))
        out.append(MachineBandOut(
            id=m.id, name=m.name, line=lines[m.id].id, line_name=lines[m.id].name,
            segments=[SegmentOut(**asdict(s)) for s in segments],
            planned_stops=[SpanOut(start_ns=p.window.start_ns, end_ns=p.window.end_ns,
                                   name=p.reason) for p in mine]))
        if sum(len(b.segments) for b in out) > MAX_SEGMENTS:
            raise HTTPException(400, f"more than {MAX_SEGMENTS} segments in the range: "
                                     "narrow it")
    return TimelineOut(from_ns=span.start_ns, to_ns=span.end_ns, now_ns=now,
                       timezone=calendar.timezone,
                       shifts=[SpanOut(start_ns=s.window.start_ns, end_ns=s.window.end_ns,
                                       name=s.name) for s in calendar_shifts],
                       machines=out)
