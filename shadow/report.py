"""KPI reports from the tables: one window, or one per shift, day or order. The CLI,
the ERP export, the shift_kpi rows and the API all go through here, so they print the
same numbers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import select

from gateway.config import SiteConfig
from shadow import tables as t
from shadow.calendar import Shift, days, from_ns, shifts
from shadow.config import ShadowedConfig, ShadowMachineConfig
from shadow.kpi import KpiResult, compute
from shadow.store import ShadowStore
from shadow.timeline import NS_PER_S, Window

By = Literal["window", "shift", "day", "order"]
SHIFT_KPI_COLUMNS = ("availability", "effectiveness", "quality_ratio", "oee")


@dataclass(frozen=True, slots=True)
class Report:
    label: str  # the shift ("2026-11-23 morning"), day, order, or "window"
    result: KpiResult


def select_machines(sites: Sequence[SiteConfig[ShadowMachineConfig]], machine: str | None,
                    line: str | None, site: str | None = None, *,
                    where: str = "in the config") -> list[ShadowMachineConfig]:
    """The machines of one machine id, line id or site id among `sites` (all of theirs
    if none is given); raises KeyError naming what is unknown `where`."""
    if machine is not None:
        found = [m for s in sites for ln in s.all_lines() for m in ln.machines
                 if m.id == machine]
        if not found:
            raise KeyError(f"no machine {machine!r} {where}")
        return found
    if line is not None:
        lines = [ln for s in sites for ln in s.all_lines() if ln.id == line]
        if not lines:
            raise KeyError(f"no line {line!r} {where}")
        return [m for ln in lines for m in ln.machines]
    chosen = [s for s in sites if site is None or s.id == site]
    if not chosen:
        raise KeyError(f"no site {site!r} {where}")
    return [m for s in chosen for ln in s.all_lines() for m in ln.machines]


def kpi(store: ShadowStore, config: ShadowedConfig, window: Window,
        machines: Sequence[ShadowMachineConfig], *, job: str | None = None) -> KpiResult:
    """The KPIs of `machines` over `window` (or of one job in it): the one computation
    behind `ombre kpi`, the API, its stream, the exports and the shift_kpi rows. It
    depends on the tables alone, never on the caller's clock."""
    store.ensure_calendar(config.shadow.calendar, window)
    ids = [m.id for m in machines]
    timeline = store.timeline(window, ids)
    return compute(window, ids, timeline.intervals, timeline.counts, timeline.orders,
                   shifts=timeline.shifts, planned_stops=timeline.planned_stops,
                   exclude_idle=bool(machines) and all(m.exclude_idle for m in machines),
                   job=job, coverage=timeline.coverage)


def reports(store: ShadowStore, config: ShadowedConfig, window: Window,
            machines: Sequence[ShadowMachineConfig], by: By) -> list[Report]:
    """One report for the window, or one per shift, local day or job within it."""
    calendar = config.shadow.calendar
    if by == "order":
        si = t.state_interval
        with store.engine.connect() as c:
            keys = c.execute(select(si.c.job_key).distinct().where(
                si.c.machine_id.in_([m.id for m in machines]), si.c.job_key.is_not(None),
                si.c.start_ns < window.end_ns, si.c.end_ns > window.start_ns)).scalars().all()
        return [Report(key, kpi(store, config, window, machines, job=key))
                for key in sorted(keys)]
    if by == "shift":
        parts = [(f"{s.day.isoformat()} {s.name}",
                  Window(max(s.window.start_ns, window.start_ns),
                         min(s.window.end_ns, window.end_ns)))
                 for s in shifts(calendar, window)]
    elif by == "day":
        parts = [(_day_label(w, config), w) for w in days(calendar, window)]
    else:
        parts = [("window", window)]
    return [Report(label, kpi(store, config, w, machines)) for label, w in parts]


def _day_label(window: Window, config: ShadowedConfig) -> str:
    return from_ns(window.start_ns).astimezone(ZoneInfo(config.shadow.calendar.timezone)
                                                ).date().isoformat()


def current_shift(config: ShadowedConfig, now_ns: int) -> Window:
    """From the start of the shift running at `now_ns` (8 hours back when none is) to
    `now_ns`: the window of the live "current shift" KPIs."""
    current = [s.window for s in shifts(config.shadow.calendar, Window(now_ns, now_ns + 1))
               if s.window.start_ns <= now_ns < s.window.end_ns]
    return Window(current[0].start_ns if current else now_ns - 8 * 3600 * NS_PER_S, now_ns)


def live_kpis(store: ShadowStore, config: ShadowedConfig, window: Window,
              machines: Sequence[ShadowMachineConfig]) -> dict[str, float | None]:
    """OEE, its factors, coverage and the unknown share of one machine, a line or the
    plant over `window`: what the live stream and the northbound model show."""
    result = kpi(store, config, window, machines).to_dict()
    return {**{k: result["kpis"][k]["value"] for k in SHIFT_KPI_COLUMNS},
            "coverage": result["coverage"]["value"],
            "no_data_s": result["coverage"]["no_data_s"],
            "unclassified_share": result["unclassified_share"]["value"]}


def record_shift_kpis(store: ShadowStore, config: ShadowedConfig, span: Window,
                      machines: Sequence[ShadowMachineConfig] | None = None) -> list[Shift]:
    """Writes the shift_kpi rows of every shift that ended within (start, end] of
    `span`, one per machine (of `machines`, by default the config's), for the
    shift_kpis view; the shifts whose rows it wrote."""
    ended = [s for s in shifts(config.shadow.calendar, span)
             if span.start_ns < s.window.end_ns <= span.end_ns]
    done = []
    for s in ended:
        rows = []
        with store.engine.connect() as c:
            shift_id = c.execute(select(t.shift.c.id).where(
                t.shift.c.start_ns == s.window.start_ns, t.shift.c.name == s.name)).scalar()
        if shift_id is None:
            continue
        for machine in config.machines() if machines is None else machines:
            result = kpi(store, config, s.window, [machine])
            data = result.to_dict()
            times, quantities = data["time_s"], data["quantities"]
            rows.append({
                "shift_id": shift_id, "machine_id": machine.id, "result": json.dumps(data),
                **{k: data["kpis"][k]["value"] for k in SHIFT_KPI_COLUMNS},
                "unclassified_share": data["unclassified_share"]["value"],
                "pbt_min": times["PBT"] / 60, "apt_min": times["APT"] / 60,
                **{k.lower(): quantities[k] for k in ("PQ", "GQ", "SQ", "RQ")},
            })
        store.upsert_shift_kpis(rows)
        done.append(s)
    return done

