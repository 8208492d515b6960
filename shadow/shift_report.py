"""What the shift report of one line says, as plain data: the line's OEE and its factors
against the line's targets (shadow.targets), each machine's, the parts good and scrap
per order, the drift alerts still open at the shift's end and the operators' notes.
api/shift_report.py renders it; the running shadow (at each shift's end) and
`ombre report shift` ask for it. It reads the tables only: the same shift gives the same
facts whenever it is asked."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from gateway.config import LineConfig
from shadow import tables as t
from shadow.calendar import Shift, from_ns
from shadow.config import ShadowedConfig, ShadowMachineConfig
from shadow.losses import Cause, losses
from shadow.report import kpi
from shadow.shift_notes import notes
from shadow.store import ShadowStore
from shadow.timeline import Window

FACTORS = ("oee", "availability", "effectiveness", "quality_ratio")
MAX_ALERTS = 50  # alerts listed on the page: it is one page
MAX_BARS = 8  # bars of the Pareto; the smaller losses make one more bar, "other"


def line_of(config: ShadowedConfig, line: str) -> LineConfig[ShadowMachineConfig]:
    """The line with this id; KeyError naming it if the config has none."""
    found = next((ln for site in config.sites for ln in site.all_lines() if ln.id == line),
                 None)
    if found is None:
        known = ", ".join(ln.id for site in config.sites for ln in site.all_lines())
        raise KeyError(f"no line {line!r} in the config (its lines: {known or 'none'})")
    return found


def _figures(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: {"value": result["kpis"][k]["value"], "reason": result["kpis"][k]["reason"]}
            for k in FACTORS}


def _alerts(store: ShadowStore, machines: list[str], window: Window) -> list[dict[str, Any]]:
    """The drift alerts of `machines` raised before the window's end and not back in
    control (nor closed) by then: open at the shift's end."""
    da = t.drift_alert
    with store.engine.connect() as c:
        rows = c.execute(select(da).where(
            da.c.machine_id.in_(machines), da.c.detected_ns < window.end_ns,
            da.c.end_ns.is_(None) | (da.c.end_ns > window.end_ns))
            .order_by(da.c.detected_ns).limit(MAX_ALERTS)).all()
    return [{"id": r.id, "machine": r.machine_id, "signal": r.signal,
             "detector": r.detector, "direction": r.direction, "shift_sigma": r.shift_sigma,
             "shift_value": r.shift_value, "unit": r.unit,
             "detected": from_ns(r.detected_ns).isoformat(),
             "acknowledged": r.acknowledged_ns is not None and
             r.acknowledged_ns < window.end_ns} for r in rows]


def _pareto(store: ShadowStore, config: ShadowedConfig, window: Window,
            machines: list[ShadowMachineConfig]) -> dict[str, Any]:
    """The Pareto of the line's lost time by cause (shadow.losses), largest first: at
    most MAX_BARS bars, then one bar "other"; a cause that gained time (a machine faster
    than its PRU) is left out. `unpriced`: machines whose speed and quality losses are
    unknown (no PRU)."""
    found = losses(store, config, window, machines)
    bars: list[dict[str, Any]] = [
        {"cause": str(b.cause), "key": b.key, "lost_s": b.lost_s,
         "text": found.reason_texts.get(b.key) if b.cause is Cause.REASON else None}
        for b in found.by_reason if b.lost_s > 0]
    if len(bars) > MAX_BARS + 1:
        rest = sum(b["lost_s"] for b in bars[MAX_BARS:])
        bars = [*bars[:MAX_BARS], {"cause": "other", "key": "other", "lost_s": rest,
                                   "text": None}]
    return {"bars": bars, "unpriced": dict(found.unpriced)}


def facts(store: ShadowStore, config: ShadowedConfig, line: str, shift: Shift,
          now_ns: int) -> dict[str, Any]:
    """The report's content for `line` (KeyError if unknown) and `shift`: up to `now_ns`
    when the shift is still running (then `complete` is false)."""
    found = line_of(config, line)
    if now_ns <= shift.window.start_ns:
        raise ValueError(f"the {shift.name} shift of {shift.day.isoformat()} starts at "
                         f"{from_ns(shift.window.start_ns).isoformat()}, after "
                         f"{from_ns(now_ns).isoformat()}")
    window = Window(shift.window.start_ns, min(shift.window.end_ns, now_ns))
    machines = found.machines
    whole = kpi(store, config, window, machines).to_dict()
    each = [(m, kpi(store, config, window, [m]).to_dict()) for m in machines]
    targets = config.shadow.targets.of(line)
    return {
        "plant": ", ".join(site.name or site.id for site in config.sites),
        "line": {"id": found.id, "name": found.name or found.id},
        "shift": {"name": shift.name, "day": shift.day.isoformat(),
                  "start": from_ns(shift.window.start_ns).isoformat(),
                  "end": from_ns(shift.window.end_ns).isoformat(),
                  "start_ns": shift.window.start_ns, "end_ns": shift.window.end_ns},
        "timezone": config.shadow.calendar.timezone,
        "until": from_ns(window.end_ns).isoformat(),
        "complete": window.end_ns == shift.window.end_ns,
        "kpis": _figures(whole),
        "targets": {k: getattr(targets, k) for k in FACTORS},
        "time_s": whole["time_s"],
        "coverage": whole["coverage"]["value"],
        "machines": [{"id": m.id, "name": m.name or m.id, "kpis": _figures(r)}
                     for m, r in each],
        "orders": [{"job": j["job"], "PQ": j["PQ"], "GQ": j["GQ"], "SQ": j["SQ"],
                    "RQ": j["RQ"]} for j in whole["jobs"]],
        "quantities": {k: whole["quantities"][k] for k in ("PQ", "GQ", "SQ", "RQ")},
        "losses": _pareto(store, config, window, machines),
        "alerts": _alerts(store, [m.id for m in machines], window),
        "notes": [{"author": n.author, "written": from_ns(n.written_ns).isoformat(),
                   "text": n.text} for n in notes(store.engine, line, shift.window.start_ns)],
    }
