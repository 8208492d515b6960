"""Where the shop floor stands on the acatech Industrie 4.0 Maturity Index, from what the
running system measured over a window (README, "Maturity assessment").

The index has six stages (computerisation, connectivity, visibility, transparency,
predictive capacity, adaptability) in four structural areas (resources, information
systems, organisational structure, culture). Data can speak for the first two areas;
the other two take their stage from the self-assessment (shadow/self_assessment.py),
declared by an admin and marked so, and are not assessed until one of their questions
is answered. An area reaches a stage when every criterion of that stage and of every
stage below it holds, measured or declared: no averaging, and a criterion that cannot
be measured, or a question not answered "yes", does not hold. The plant's stage is the
lowest of the assessed areas'. Every threshold is in CRITERIA, with its reason.

`assess` is the one computation behind `ombre assess` and `GET /api/v1/assessment`."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from shadow import tables as t
from shadow.calendar import rfc3339
from shadow.config import ShadowedConfig
from shadow.maturity_facts import LEAD_HORIZON_NS, MachineFacts, PlantFacts, gather
from shadow.self_assessment import Declared, declared
from shadow.store import ShadowStore
from shadow.timeline import NS_PER_S, Window

SCHEMA = "ombre.assessment/1"
STAGES = ("none", "computerisation", "connectivity", "visibility", "transparency",
          "predictive capacity", "adaptability")
AREAS = ("resources", "information_systems", "organisational_structure", "culture")
SELF_ASSESSED = ("organisational_structure", "culture")
MAX_NEXT_STEPS = 20
DEFAULT_DAYS = 30  # the window of an assessment when none is given
NOT_MEASURED = "not measured: "  # how the note of a figure Ombre cannot measure starts
Ratio = tuple[float, float]  # numerator, denominator


@dataclass(frozen=True, slots=True)
class Measure:
    """A share measured per machine (summed over a line or the plant) or plant-wide."""

    key: str
    text: str  # what it says, in the words of the shop floor
    source: str  # where the figure comes from
    machine: Callable[[MachineFacts], Ratio] | None = None
    plant: Callable[[PlantFacts], Ratio] | None = None


def _flag(value: bool) -> Ratio:
    return (1.0 if value else 0.0), 1.0


MEASURES = {m.key: m for m in (
    Measure("controller_share", "machines with a digital controller (signals a source reads)",
            "config: machines[].signals, and sources[] that can feed the machine (or its "
            "data in the window, e.g. from a replay)",
            machine=lambda f: _flag(f.signals > 0 and (bool(f.protocols) or f.connected))),
    Measure("state_declared_share", "machines whose state the equipment model can read",
            "config: machines[].state",
            machine=lambda f: _flag(f.state_declared)),
    Measure("connected_share", "machines that sent data in the window",
            "state_interval (and each machine's open interval in machine_state) overlapping "
            "the window",
            machine=lambda f: _flag(f.connected)),
    Measure("link_availability", "time the gateway ran, since it was installed",
            "gateway_run: data time covered by the gateway's runs / the window from its first "
            "run on",
            plant=lambda p: (p.link_covered_s, p.link_span_s)),
    Measure("classified_share", "planned time classified into ISO 22400 categories",
            "shadow.report.kpi (as `ombre kpi`): (PBT - UNCL) / (POT - PDOT), so neither "
            "unknown nor no-data time counts",
            machine=lambda f: (f.classified_s, f.planned_s)),
    Measure("shift_kpis_share", "shifts with their KPIs computed",
            "shift_kpi rows with an availability, per machine and shift wholly inside the "
            "window (shifts from shadow.calendar)",
            machine=lambda f: (f.shifts_with_kpis, f.shifts_ended)),
    Measure("orders_linked_share", "running time linked to a production order",
            "state_interval APT time whose job_key is a production_order",
            machine=lambda f: (f.apt_ordered_s, f.apt_s)),
    Measure("downtime_reason_share", "downtime minutes with a reason (machine or operator)",
            "state_interval ADET and ADOT time (closed intervals) with a reason_code",
            machine=lambda f: (f.downtime_reason_s, f.downtime_s)),
    Measure("alerts_cause_share", "closed drift alerts closed with a cause",
            "drift_alert detected in the window: closed with a cause / closed",
            machine=lambda f: (f.alerts_closed_with_cause, f.alerts_closed)),
    Measure("drift_watched_share", "connected machines with a signal watched for drift",
            "config: machines[].drift, of the machines that sent data",
            machine=lambda f: (float(f.connected and f.drift_signals > 0), float(f.connected))),
    Measure("failures_anticipated_share", "failure stops preceded by a drift alert",
            f"state_interval failure events starting in the window with a drift_alert on "
            f"the same machine in the {LEAD_HORIZON_NS // (3600 * NS_PER_S)} h before",
            machine=lambda f: (len(f.lead_times_s), f.failures)),
)}


@dataclass(frozen=True, slots=True)
class Criterion:
    area: str
    stage: int
    measure: str  # a key of MEASURES
    threshold: float  # the plant-wide share must be at least this
    reason: str  # why this threshold
    action: str  # the next step for a machine below it
    empty_holds: bool = False  # nothing to judge (a denominator of 0) holds


# The one table of thresholds; the README's table says the same (tests check it).
CRITERIA: tuple[Criterion, ...] = (
    Criterion("resources", 1, "controller_share", 0.8,
              "most machines, not all: a small shop keeps a few manual machines for years",
              "declare its signals and a source (OPC UA, MQTT) that reads them"),
    Criterion("resources", 2, "connected_share", 0.8,
              "the machines with a controller must actually send data",
              "connect it: check its source, network and the signal names"),
    Criterion("resources", 3, "classified_share", 0.9,
              "a tenth of unknown time is where OEE stops being trusted on the floor",
              "map every state it reports (state table) and keep its link up"),
    Criterion("resources", 4, "drift_watched_share", 0.5,
              "drift detection on half the connected machines covers the critical ones "
              "first without alarm fatigue",
              "watch a process signal or its cycle time with a drift detector"),
    Criterion("information_systems", 1, "state_declared_share", 0.8,
              "the same share as the controllers: one equipment model that knows how to "
              "read each machine's state",
              "declare how its state is read (state: table, rules, machinery, packml)"),
    Criterion("information_systems", 2, "link_availability", 0.95,
              "at most a day and a half lost a month: beyond that the KPIs have holes "
              "people notice",
              "keep the gateway running: a systemd unit, a UPS, a watched network link"),
    Criterion("information_systems", 3, "shift_kpis_share", 0.9,
              "KPIs for nine shifts in ten make a shift meeting possible every day",
              "declare the shift calendar and keep the machine's data flowing through shifts"),
    Criterion("information_systems", 3, "orders_linked_share", 0.8,
              "most running time tied to an order lets the ERP see real progress",
              "send its job signal, or start jobs on it from the orders page"),
    Criterion("information_systems", 4, "downtime_reason_share", 0.8,
              "four downtime minutes in five explained is enough to rank the causes",
              "give its stops a reason: map the PLC's fault codes, or ask operators",
              empty_holds=True),
    Criterion("information_systems", 4, "alerts_cause_share", 0.8,
              "an alert closed without a cause teaches nothing",
              "close its drift alerts with a cause", empty_holds=True),
    Criterion("information_systems", 5, "failures_anticipated_share", 0.5,
              "half the failures seen coming is where planned maintenance starts to pay",
              "watch the signal that moves before its failures with a drift detector"),
)


@dataclass(frozen=True, slots=True)
class Evidence:
    """One figure: a share (value = numerator / denominator) or a count, for the plant,
    a line or a machine; value None is not measured, and `note` says why."""

    key: str
    scope: str  # "plant", "line:<path>" or "machine:<id>"
    value: float | None
    source: str
    unit: str = "share"
    threshold: float | None = None
    numerator: float | None = None
    denominator: float | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    criterion: Criterion
    evidence: Evidence  # the plant's
    status: str  # met, not met, not measured, nothing to judge

    @property
    def holds(self) -> bool:
        return self.status in ("met", "nothing to judge")


@dataclass(frozen=True, slots=True)
class Assessment:
    window: Window
    stage: int
    areas: dict[str, int | None]  # None: not assessed
    verdicts: tuple[Verdict, ...]
    evidence: tuple[Evidence, ...]
    next_steps: tuple[dict[str, Any], ...]
    declared: tuple[Declared, ...] = ()  # every question, answered or not
    asked_start_ns: int | None = None  # where the window was asked to start, if clipped

    def to_dict(self) -> dict[str, Any]:
        areas: dict[str, Any] = {}
        for area in AREAS:
            stage = self.areas[area]
            answers = [_declared(d) for d in self.declared if d.question.area == area]
            if stage is None:
                areas[area] = {"stage": None, "stage_name": None, "status": "not assessed",
                               "note": "data cannot show it: answer the self-assessment "
                                       "(the dashboard's maturity page)", "criteria": answers}
                continue
            areas[area] = {"stage": stage, "stage_name": STAGES[stage],
                           "status": "declared" if area in SELF_ASSESSED else "measured",
                           "criteria": [_criterion(v) for v in self.verdicts
                                        if v.criterion.area == area] + answers,
                           "not_measured_stages": [
                               STAGES[s] for s in range(1, len(STAGES))
                               if not any(c.area == area and c.stage == s for c in CRITERIA)]}
            if area in SELF_ASSESSED:
                areas[area]["note"] = "declared in the self-assessment, not measured"
        window: dict[str, Any] = {
            "from": rfc3339(self.window.start_ns), "to": rfc3339(self.window.end_ns),
            "from_ns": self.window.start_ns, "to_ns": self.window.end_ns}
        if self.asked_start_ns is not None:
            window["note"] = (f"asked from {rfc3339(self.asked_start_ns)}; starts at the "
                              f"gateway's first run, before which Ombre saw nothing")
        return {
            "schema": SCHEMA,
            "window": window,
            "stage": self.stage, "stage_name": STAGES[self.stage],
            "basis": "the lowest stage of the assessed areas: "
                     + ", ".join(a.replace("_", " ") + (" (declared)" if a in SELF_ASSESSED
                                                         else "")
                                 for a in AREAS if self.areas[a] is not None),
            "areas": areas,
            "evidence": [{k: v for k, v in asdict(e).items()} for e in self.evidence],
            "next_steps": list(self.next_steps),
        }


def _criterion(v: Verdict) -> dict[str, Any]:
    c, e = v.criterion, v.evidence
    return {"key": f"{c.area}.{c.measure}", "stage": c.stage, "stage_name": STAGES[c.stage],
            "text": MEASURES[c.measure].text, "status": v.status, "value": e.value,
            "threshold": c.threshold, "reason": c.reason, "note": e.note, "source": e.source,
            "declared": False}


def _declared(d: Declared) -> dict[str, Any]:
    q = d.question
    return {"key": f"{q.area}.{q.key}", "stage": q.stage, "stage_name": STAGES[q.stage],
            "text": q.en, "status": d.status, "declared": True, "answer": d.answer,
            "answered_by": d.answered_by,
            "answered_at": None if d.answered_ns is None else rfc3339(d.answered_ns)}


def _share(key: str, scope: str, parts: Sequence[Ratio], threshold: float | None) -> Evidence:
    num, den = sum(p[0] for p in parts), sum(p[1] for p in parts)
    return Evidence(key, scope, num / den if den else None, MEASURES[key].source,
                    threshold=threshold, numerator=num, denominator=den,
                    note=None if den else "nothing to measure in the window")


def measured(plant: PlantFacts) -> list[Evidence]:
    """Every figure for the plant, each line and each machine."""
    thresholds = {c.measure: c.threshold for c in CRITERIA}
    out: list[Evidence] = []
    lines = sorted({f.line for f in plant.machines})
    for key, measure in MEASURES.items():
        limit = thresholds.get(key)
        if measure.plant is not None:
            out.append(_share(key, "plant", [measure.plant(plant)], limit))
            continue
        assert measure.machine is not None
        of = measure.machine
        out.append(_share(key, "plant", [of(f) for f in plant.machines], limit))
        out += [_share(key, f"line:{ln}", [of(f) for f in plant.machines if f.line == ln], limit)
                for ln in lines]
        out += [_share(key, f"machine:{f.machine}", [of(f)], limit) for f in plant.machines]
    return out + _figures(plant)


def _figures(plant: PlantFacts) -> list[Evidence]:
    """The figures no criterion judges, and what is not measured, said so."""
    out = [Evidence("signals_declared", f"machine:{f.machine}", f.signals,
                    "config: machines[].signals", unit="signals") for f in plant.machines]
    out += [Evidence("drift_signals", f"machine:{f.machine}", f.drift_signals,
                     "config: machines[].drift", unit="signals") for f in plant.machines]
    protocols = sorted({p for f in plant.machines for p in f.protocols})
    out.append(Evidence("protocols", "plant", len(protocols), "config: sources[].type",
                        unit="protocols", note=", ".join(
                            f"{p}: {sum(p in f.protocols for f in plant.machines)} machines"
                            for p in protocols) or "no source configured"))
    out += [Evidence("data_age", f"machine:{f.machine}", f.age_s,
                     "machine_state: the shadow's clock minus the machine's last reading",
                     unit="s", note=None if f.age_s is not None else "no reading yet")
            for f in plant.machines]
    leads = [s for f in plant.machines for s in f.lead_times_s]
    out.append(Evidence("lead_time", "plant", statistics.median(leads) / 60 if leads else None,
                        MEASURES["failures_anticipated_share"].source, unit="min (median)",
                        note=(", ".join(f"{s / 60:.0f}" for s in sorted(leads)) + " min")
                        if leads else "no failure preceded by a drift alert"))
    out += _completeness(plant)
    out.append(Evidence(
        "readings_lost", "plant", plant.readings_lost,
        "gateway_run.readings_lost: readings the gateway's queue and outbox dropped "
        "(their overflow policy), per run overlapping the window", unit="readings",
        note=None if plant.readings_lost is not None else
        NOT_MEASURED + "no gateway run in the window recorded its dropped readings"))
    out += _age_p95(plant)
    not_measured = (
        ("adaptive_actions", "actions taken automatically from data",
         "Ombre takes no action by itself yet"),
    )
    out += [Evidence(key, "plant", None, source, unit="", note=NOT_MEASURED + why)
            for key, source, why in not_measured]
    return out


COMPLETENESS_SOURCE = (
    "reading_count: readings and events the shadow received (a redelivered one once) in "
    "the hours of data time overlapping the window / the time the gateway ran in them "
    "divided by each signal's period: signals[].expected_period_s, else the poll interval "
    "of a source that sends it on every poll (Modbus, S7 items without a deadband)")


def _completeness(plant: PlantFacts) -> list[Evidence]:
    """Readings received / expected, per machine and for the plant; a signal with no
    expected period is not measured, and named."""
    def evidence(scope: str, machines: Sequence[MachineFacts]) -> Evidence:
        got = sum(f.readings_received for f in machines)
        expected = sum(f.readings_expected for f in machines)
        unrated = [f"{f.machine}/{s}" if scope == "plant" else s
                   for f in machines for s in f.unrated]
        why = (f"not measured for {', '.join(unrated[:10])}"
               f"{f' and {len(unrated) - 10} more' if len(unrated) > 10 else ''}: no "
               f"expected period or steady poll") if unrated else None
        if not expected:
            return Evidence("data_completeness", scope, None, COMPLETENESS_SOURCE,
                            note=NOT_MEASURED + (why or "no time the gateway ran")
                            if scope == "plant" else why or "no time the gateway ran")
        return Evidence("data_completeness", scope, got / expected, COMPLETENESS_SOURCE,
                        numerator=got, denominator=expected, note=why)

    return [evidence("plant", plant.machines),
            *(evidence(f"machine:{f.machine}", [f]) for f in plant.machines)]


AGE_SOURCE = ("model_age: at each minute of data time the shadow's clock passed, the "
              "minute minus the machine's newest reading at or before it (kept 35 days); "
              "the 95th percentile of the samples in the window")


def _age_p95(plant: PlantFacts) -> list[Evidence]:
    """The 95th percentile of the live model's age, per machine and for the plant."""
    def evidence(scope: str, ages: Sequence[float]) -> Evidence:
        if not ages:
            why = "no sample of the live model's age in the window"
            return Evidence("data_age_p95", scope, None, AGE_SOURCE, unit="s",
                            note=NOT_MEASURED + why if scope == "plant" else why)
        return Evidence("data_age_p95", scope, float(np.percentile(ages, 95)), AGE_SOURCE,
                        unit="s", note=f"{len(ages)} samples")

    return [evidence("plant", [a for f in plant.machines for a in f.ages_s]),
            *(evidence(f"machine:{f.machine}", f.ages_s) for f in plant.machines)]


def _verdict(criterion: Criterion, plant: Evidence) -> Verdict:
    if plant.value is None:
        status = "nothing to judge" if criterion.empty_holds else "not measured"
    else:
        status = "met" if plant.value >= criterion.threshold else "not met"
    return Verdict(criterion, plant, status)


def area_stage(verdicts: Sequence[Verdict], area: str,
               answers: Sequence[Declared] = ()) -> int:
    """The highest stage whose criteria, measured and declared, and those of every stage
    below, all hold."""
    stage = 0
    for s in range(1, len(STAGES)):
        mine = [v.holds for v in verdicts if v.criterion.area == area and v.criterion.stage == s]
        mine += [d.holds for d in answers if d.question.area == area and d.question.stage == s]
        if not mine or not all(mine):
            break
        stage = s
    return stage


def next_steps(plant: PlantFacts, verdicts: Sequence[Verdict],
               areas: dict[str, int | None]) -> list[dict[str, Any]]:
    """For each area, the criteria of its next stage that do not hold, and the machines
    below their threshold: critical and drifting machines first (by downtime, scrap and
    drift alerts, where known), then what concerns the whole plant; at most
    MAX_NEXT_STEPS."""
    steps: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    for v in verdicts:
        c = v.criterion
        if v.holds or areas[c.area] != c.stage - 1:
            continue
        measure = MEASURES[c.measure]
        step = {"stage": c.stage, "stage_name": STAGES[c.stage], "criterion":
                f"{c.area}.{c.measure}", "threshold": c.threshold, "action": c.action}
        if measure.machine is None:
            steps.append(((c.stage, 1, 0, 0, 0, ""), {**step, "machine": None, "history": None,
                                                      "value": v.evidence.value}))
            continue
        for f in plant.machines:
            num, den = measure.machine(f)
            if den and num / den < c.threshold:
                history = {"downtime_min": round(f.downtime_s / 60, 1), "scrap": f.scrap,
                           "drift_alerts": f.alerts} if f.connected else None
                rank = (c.stage, 0, -f.downtime_s, -f.scrap, -f.alerts, f.machine)
                steps.append((rank, {**step, "machine": f.machine, "line": f.line,
                                     "value": num / den, "history": history}))
    return [{"rank": i + 1, **s} for i, (_, s) in
            enumerate(sorted(steps, key=lambda rs: rs[0])[:MAX_NEXT_STEPS])]


def since_first_run(store: ShadowStore, window: Window) -> Window:
    """`window` from the gateway's first run on (its oldest reading in `gateway_run`):
    time before Ombre ever ran is neither unclassified nor a shift without KPIs. A window
    with no run, or ending before the first, is kept as it is."""
    with store.engine.connect() as c:
        first = c.execute(select(func.min(t.gateway_run.c.start_ns))).scalar_one()
    if first is None or not window.start_ns < first < window.end_ns:
        return window
    return Window(first, window.end_ns)


def assess(store: ShadowStore, config: ShadowedConfig, asked: Window) -> Assessment:
    """The assessment of the plant over `asked` from the gateway's first run on
    (since_first_run), from the config and the shadow's tables alone, with the
    self-assessment's answers as they stood at the window's end: whoever asks, and
    whenever, gets the same for the same data."""
    window = since_first_run(store, asked)
    plant = gather(store, config, window)
    evidence = measured(plant)
    at_plant = {e.key: e for e in evidence if e.scope == "plant"}
    verdicts = tuple(_verdict(c, at_plant[c.measure]) for c in CRITERIA)
    answers = declared(store, window.end_ns)
    answered = {d.question.area for d in answers if d.answer is not None}
    areas: dict[str, int | None] = {
        a: None if a in SELF_ASSESSED and a not in answered else area_stage(verdicts, a, answers)
        for a in AREAS}
    stage = min(s for s in areas.values() if s is not None)
    return Assessment(window, stage, areas, verdicts, tuple(evidence),
                      tuple(next_steps(plant, verdicts, areas)), answers,
                      None if window == asked else asked.start_ns)


def record(store: ShadowStore, result: dict[str, Any], assessed_ns: int) -> None:
    """Keeps `result` (Assessment.to_dict) as the assessment of the day its window ends
    on, replacing an earlier one of that day."""
    window = result["window"]
    row = {"day": window["to"][:10], "from_ns": window["from_ns"], "to_ns": window["to_ns"],
           "assessed_ns": assessed_ns, "stage": result["stage"], "result": json.dumps(result)}
    ma = t.maturity_assessment
    try:
        with store.engine.begin() as c:
            c.execute(delete(ma).where(ma.c.day == row["day"]))
            c.execute(insert(ma).values(row))
    except IntegrityError:  # another process recorded the same day at the same moment
        pass


def history(store: ShadowStore, limit: int) -> list[dict[str, Any]]:
    """The stored assessments, oldest day first: the stage of the plant and of each
    area, and the window."""
    ma = t.maturity_assessment
    with store.engine.connect() as c:
        rows = c.execute(select(ma.c.day, ma.c.assessed_ns, ma.c.stage, ma.c.result)
                         .order_by(ma.c.day.desc()).limit(limit)).all()
    out = []
    for day, assessed_ns, stage, text in reversed(rows):
        result = json.loads(text)
        out.append({"day": day, "assessed_ns": assessed_ns, "stage": stage,
                    "stage_name": STAGES[stage], "window": result["window"],
                    "areas": {a: v["stage"] for a, v in result["areas"].items()}})
    return out
