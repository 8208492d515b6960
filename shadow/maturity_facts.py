"""What the maturity assessment measures, read from the config and the shadow's tables
over one window: one MachineFacts per machine and one PlantFacts. shadow/maturity.py
turns them into evidence and verdicts; this module only reads. The time elements come
from `shadow.report.kpi`, the one KPI computation, so the assessment and `ombre kpi`
never disagree about a minute."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select

from shadow import tables as t
from shadow.calendar import shifts
from shadow.config import ShadowedConfig, ShadowMachineConfig
from shadow.report import kpi
from shadow.store import ShadowStore
from shadow.time_elements import Span, intersect, length, normalise
from shadow.timeline import HOUR_NS, NS_PER_S, Category, Window

LEAD_HORIZON_NS = 24 * 3600 * NS_PER_S  # a drift alert at most this long before a failure
DOWNTIME = (Category.ADET, Category.ADOT)


@dataclass(frozen=True, slots=True)
class MachineFacts:
    """One machine over the window; times in seconds, None where nothing can tell."""

    machine: str
    line: str  # its line's path: site[/area]/line
    signals: int  # declared in the config
    drift_signals: int  # signals a drift detector watches
    protocols: tuple[str, ...]  # types of the configured sources that can feed it
    state_declared: bool  # the config says how to read its state
    connected: bool  # a state interval of it (closed or open) overlaps the window
    planned_s: float  # POT - PDOT
    classified_s: float  # PBT - UNCL: planned time in an ISO 22400 category
    apt_s: float  # in a running state (APT), clipped to the window
    apt_ordered_s: float  # running time with a job that has a production order
    downtime_s: float  # ADET and ADOT (the open stop too), clipped to the window
    downtime_reason_s: float  # of which with a reason code
    downtime_reason_machine_s: float  # of which the machine gave
    scrap: int
    alerts: int  # drift alerts detected in the window
    alerts_closed: int
    alerts_closed_with_cause: int
    failures: int  # failure events starting in the window
    lead_times_s: tuple[float, ...]  # per failure preceded by a drift alert: how long before
    shifts_ended: int  # shifts wholly inside the window
    shifts_with_kpis: int  # of which shift_kpi holds an availability
    age_s: float | None  # the shadow's clock minus its last reading
    readings_received: int  # of its signals with a period, in the window's hours
    readings_expected: float  # the time the gateway ran in those hours / each period
    # (declared: signals[].expected_period_s, else a source's polling: polled_periods_s)
    unrated: tuple[str, ...]  # its signals with no expected period: not measured
    ages_s: tuple[float, ...]  # its live-model age sampled once a minute in the window


@dataclass(frozen=True, slots=True)
class PlantFacts:
    window: Window
    machines: tuple[MachineFacts, ...]
    link_span_s: float  # the window from the gateway's first run on
    link_covered_s: float  # of which the gateway's runs covered
    readings_lost: int | None  # dropped by the runs overlapping the window; None: unknown


def machine_lines(config: ShadowedConfig) -> Iterator[tuple[ShadowMachineConfig, str]]:
    """Each machine with its line's path, as the equipment table names lines."""
    for site in config.sites:
        groups = [(site.id, site.lines), *((f"{site.id}/{a.id}", a.lines) for a in site.areas)]
        for parent, lines in groups:
            for line in lines:
                for machine in line.machines:
                    yield machine, f"{parent}/{line.id}"


def gather(store: ShadowStore, config: ShadowedConfig, window: Window) -> PlantFacts:
    """The facts of every machine of `config` over `window`, and the gateway's runs."""
    protocols: dict[str, set[str]] = {}
    everything = [m.id for m in config.machines()]
    periods = {key: period for source in config.sources
               for key, period in source.polled_periods_s().items()}
    periods |= {(m.id, s.name): s.expected_period_s for m in config.machines()
                for s in m.signals if s.expected_period_s is not None}
    for source in config.sources:
        fed = source.fed_machines()
        for machine in everything if fed is None else fed:
            protocols.setdefault(machine, set()).add(source.type)
    ended = [s.window for s in shifts(config.shadow.calendar, window)
             if window.start_ns <= s.window.start_ns and s.window.end_ns <= window.end_ns]
    gr, rc = t.gateway_run, t.reading_count
    hours = (window.start_ns // HOUR_NS * HOUR_NS, -(-window.end_ns // HOUR_NS) * HOUR_NS)
    with store.engine.connect() as c:
        snaps = {m: json.loads(s) for m, s in c.execute(select(t.machine_state))}
        runs = [(s, e) for s, e in c.execute(select(gr.c.start_ns, gr.c.end_ns))]
        lost = c.execute(select(func.count(), func.count(gr.c.readings_lost),
                                func.sum(gr.c.readings_lost)).where(
            gr.c.start_ns < window.end_ns, gr.c.end_ns >= window.start_ns)).one()
        ages: dict[str, list[float]] = {}
        for m, age in c.execute(select(t.model_age.c.machine_id, t.model_age.c.age_s).where(
                t.model_age.c.minute_ns >= window.start_ns,
                t.model_age.c.minute_ns < window.end_ns)):
            ages.setdefault(m, []).append(age)
        # Counts are kept EVIDENCE_DAYS before the newest: a longer window counts those.
        newest = c.execute(select(func.max(rc.c.hour_ns))).scalar_one()
        if newest is not None:
            hours = (max(hours[0], newest - t.EVIDENCE_DAYS * 24 * HOUR_NS), hours[1])
        received = {(m, s): int(n) for m, s, n in c.execute(
            select(rc.c.machine_id, rc.c.signal, func.sum(rc.c.readings))
            .where(rc.c.hour_ns >= hours[0], rc.c.hour_ns < hours[1])
            .group_by(rc.c.machine_id, rc.c.signal))}
    clock = max((int(s["clock_ns"]) for s in snaps.values()), default=0)
    ran_s = length(intersect(normalise(runs), [hours])) / NS_PER_S
    facts = tuple(
        _machine(store, config, window, machine, line=line,
                 protocols=sorted(protocols.get(machine.id, ())), snap=snaps.get(machine.id),
                 clock_ns=clock, ended=ended, received=received, ran_s=ran_s,
                 periods=periods, ages=ages.get(machine.id, []))
        for machine, line in machine_lines(config))
    first = min((s for s, _ in runs), default=None)
    span: list[Span] = [] if first is None else [(max(first, window.start_ns), window.end_ns)]
    span = [(a, b) for a, b in span if b > a]
    overlapping, known, dropped = lost
    return PlantFacts(window, facts, length(span) / NS_PER_S,
                      length(intersect(normalise(runs), span)) / NS_PER_S,
                      int(dropped or 0) if overlapping and known == overlapping else None)


def _machine(store: ShadowStore, config: ShadowedConfig, window: Window,
             machine: ShadowMachineConfig,
             *, line: str, protocols: Sequence[str], snap: Mapping[str, object] | None,
             clock_ns: int, ended: Sequence[Window], received: Mapping[tuple[str, str], int],
             ran_s: float, periods: Mapping[tuple[str, str], float],
             ages: Sequence[float]) -> MachineFacts:
    result = kpi(store, config, window, [machine])
    times = result.time
    si, rc, da = t.state_interval, t.reason_code, t.drift_alert
    with store.engine.connect() as c:
        reasons = {start: source for start, source in c.execute(
            select(si.c.start_ns, si.c.reason_source).where(
                si.c.machine_id == machine.id, si.c.reason_code.is_not(None),
                si.c.start_ns < window.end_ns, si.c.end_ns > window.start_ns))}
        codes = set(c.execute(select(rc.c.code)).scalars())
        ordered = set(c.execute(select(t.production_order.c.job_key)).scalars())
        alerts = c.execute(select(da.c.detected_ns, da.c.status, da.c.cause).where(
            da.c.machine_id == machine.id, da.c.detected_ns < window.end_ns,
            da.c.detected_ns >= window.start_ns - LEAD_HORIZON_NS)).all()
        shift_ids = [s.start_ns for s in ended]
        with_kpis = c.execute(
            select(func.count()).select_from(t.shift_kpi.join(t.shift))
            .where(t.shift_kpi.c.machine_id == machine.id, t.shift.c.start_ns.in_(shift_ids),
                   t.shift_kpi.c.availability.is_not(None))).scalar_one() if ended else 0
    intervals = [i for i in store.timeline(window, [machine.id]).intervals
                 if i.machine == machine.id]
    inside_window = [(max(i.start_ns, window.start_ns), min(i.end_ns, window.end_ns), i)
                     for i in intervals
                     if i.start_ns < window.end_ns and i.end_ns > window.start_ns]
    running = [(a, b, i.job) for a, b, i in inside_window if i.category is Category.APT]
    # A closed stop's reason is in its row; the open one's is the code the machine gives.
    stops = [(b - a, reasons.get(i.start_ns, "machine" if i.reason in codes else None))
             for a, b, i in inside_window if i.category in DOWNTIME]
    failing = normalise((i.start_ns, i.end_ns) for i in intervals
                        if i.failure and i.category in (Category.ADET, Category.PDOT))
    failures = [s for s, _ in failing if window.start_ns <= s < window.end_ns]
    detected = sorted(ns for ns, _, _ in alerts)
    leads = [(f - max(d for d in detected if d < f)) / NS_PER_S for f in failures
             if any(f - LEAD_HORIZON_NS <= d < f for d in detected)]
    inside = [a for a in alerts if a.detected_ns >= window.start_ns]
    last_seen = None if snap is None else snap.get("last_seen_ns")
    rated = {s.name: periods[machine.id, s.name] for s in machine.signals
             if (machine.id, s.name) in periods}

    def seconds(sources: Sequence[str | None]) -> float:
        return sum(ns for ns, source in stops if source in sources) / NS_PER_S

    return MachineFacts(
        machine=machine.id, line=line, signals=len(machine.signals),
        drift_signals=len({d.signal for d in machine.drift}), protocols=tuple(protocols),
        state_declared=machine.state is not None,
        connected=bool(inside_window),
        planned_s=(times.pot_ns - times.pdot_ns) / NS_PER_S,
        classified_s=(times.pbt_ns - times.uncl_ns) / NS_PER_S,
        apt_s=length(normalise((a, b) for a, b, _ in running)) / NS_PER_S,
        apt_ordered_s=length(normalise((a, b) for a, b, job in running
                                       if job in ordered)) / NS_PER_S,
        downtime_s=seconds(["machine", "operator", None]),
        downtime_reason_s=seconds(["machine", "operator"]),
        downtime_reason_machine_s=seconds(["machine"]),
        scrap=result.quantities.sq,
        alerts=len(inside),
        alerts_closed=sum(1 for a in inside if a.status == "closed"),
        alerts_closed_with_cause=sum(1 for a in inside if a.status == "closed" and a.cause),
        failures=len(failures), lead_times_s=tuple(leads),
        shifts_ended=len(ended), shifts_with_kpis=int(with_kpis),
        age_s=(clock_ns - last_seen) / NS_PER_S if isinstance(last_seen, int) else None,
        readings_received=sum(received.get((machine.id, s), 0) for s in rated),
        readings_expected=sum(ran_s / period for period in rated.values()),
        unrated=tuple(s.name for s in machine.signals if s.name not in rated),
        ages_s=tuple(ages),
    )
