"""Recorded shop-floor scenarios as replay files: the worked example of docs/kpi.md,
and the plant config they replay against."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

DAY = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


def at(hhmm: str, day: datetime = DAY) -> datetime:
    hours, minutes = hhmm.split(":")
    return day + timedelta(hours=int(hours), minutes=int(minutes))


def stamp(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def plant(data_dir: Path, database: str | None = None, **machine: Any) -> dict[str, Any]:
    """One press with a state table, a job signal, total/scrap/rework counters and a
    temperature that reports every minute; shift 06:00-14:00 UTC on weekdays."""
    signals = [{"name": "state", "type": "string"}, {"name": "order", "type": "string"},
               *({"name": n} for n in ("total", "scrap", "rework", "temp"))]
    press = {
        "id": "press-1", "signals": signals,
        "state": {"type": "table", "signal": "state",
                  "map": {"IDLE": "ADOT", "SETUP": "ASUT", "RUNNING": "APT",
                          "BREAKDOWN": {"category": "ADET", "failure": True},
                          "WAITING": "ADET"}},
        "counters": {"total": "total", "scrap": "scrap", "rework": "rework", "max_step": 50},
        "job_signal": "order", **machine,
    }
    return {
        "data_dir": str(data_dir),
        "sites": [{"id": "plant", "lines": [{"id": "line-1", "machines": [press]}]}],
        "sinks": [{"type": "sqlite", "retention_days": 3650}],  # keeps the 2026-03 replays
        "shadow": {
            "database": database,
            "calendar": {"timezone": "UTC", "shifts": [
                {"name": "early", "start": "06:00", "end": "14:00"},
                {"name": "late", "start": "14:00", "end": "22:00"}]},
            "reason_codes": [{"code": "tool", "text": "tool broke", "category": "ADET",
                              "failure": True}],
            # The shift reports a replay writes at the shift's end: HTML only, no
            # Chromium in every replay (tests/ombre/test_shift_report.py prints them).
            "reports": {"pdf": False},
        },
    }


def reading(ts: datetime, signal: str, value: object, machine: str = "press-1") -> str:
    return json.dumps({"ts": stamp(ts), "machine": machine, "signal": signal, "value": value})


# The worked example: (from, state, order) from 06:00 to 14:00; "" is no order.
WORKED_STATES = [
    ("06:00", "IDLE", ""), ("06:15", "SETUP", "4711"), ("06:35", "RUNNING", "4711"),
    ("08:35", "BREAKDOWN", "4711"), ("08:50", "RUNNING", "4711"),
    ("11:20", "BREAKDOWN", "4711"), ("11:30", "RUNNING", "4711"), ("13:30", "IDLE", ""),
    ("14:00", "IDLE", ""),
]
WORKED_RUNNING = [("06:35", "08:35"), ("08:50", "11:20"), ("11:30", "13:30")]  # 390 min
WORKED_PQ, WORKED_SQ, WORKED_RQ = 480, 12, 8


def worked_example_lines(day: datetime = DAY, states: list[tuple[str, str, str]] = WORKED_STATES,
                         running: list[tuple[str, str]] = WORKED_RUNNING) -> Iterator[str]:
    """The shift of the worked example as readings in time order: the state and order
    on each change, the temperature every minute, and the counters every running
    minute, adding up to PQ 480, SQ 12 and RQ 8 over 390 running minutes."""
    minutes = [at(a, day) + timedelta(minutes=i) for a, b in running
               for i in range(int((at(b, day) - at(a, day)).total_seconds() // 60))]
    produced = {m: WORKED_PQ * (i + 1) // len(minutes) - WORKED_PQ * i // len(minutes)
                for i, m in enumerate(minutes)}
    scrapped = {minutes[i * 30 + 5]: 1 for i in range(WORKED_SQ)}
    reworked = {minutes[i * 40 + 7]: 1 for i in range(WORKED_RQ)}
    changes = {at(t, day): (s, o) for t, s, o in states}
    total, scrap, rework = 1000, 7, 3  # counters do not start at 0: the first is a baseline
    minute = at("06:00", day)
    while minute <= at("14:00", day):
        if minute in changes:
            state, order = changes[minute]
            yield reading(minute, "order", order)
            yield reading(minute, "state", state)
        if minute == at("06:00", day):
            yield from (reading(minute, s, v) for s, v in
                        (("total", total), ("scrap", scrap), ("rework", rework)))
        yield reading(minute + timedelta(seconds=1), "temp", 60.0)
        if minute in produced:
            # Parts of a running minute are counted at its last second, inside it.
            end = minute + timedelta(seconds=59)
            total += produced[minute]
            yield reading(end, "total", total)
            if minute in scrapped:
                scrap += 1
                yield reading(end, "scrap", scrap)
            if minute in reworked:
                rework += 1
                yield reading(end, "rework", rework)
        minute += timedelta(minutes=1)


# The worked example's shift on a press whose PLC says only STOPPED (ADET, no failure)
# and gives the reason in a `stop_reason` signal: SPINDLE_FAULT two seconds after the
# stop at 08:35 (a failure: TTR 15 min), and E917, which is no reason code, just before
# the 7-minute stop at 11:20. So FE = 1, MTTR = 15 min, and MTBF = sum(TBF) / (FE + 1)
# = AUPT / 2 = (20 + 120 + 150 + 123) / 2 = 206.5 min; without the reasons FE = 0, MTTR
# is null and MTBF is 413 min.
REASON_STATES = [
    ("06:00", "IDLE", ""), ("06:15", "SETUP", "4711"), ("06:35", "RUNNING", "4711"),
    ("08:35", "STOPPED", "4711"), ("08:50", "RUNNING", "4711"),
    ("11:20", "STOPPED", "4711"), ("11:27", "RUNNING", "4711"), ("13:30", "IDLE", ""),
    ("14:00", "IDLE", ""),
]
REASON_RUNNING = [("06:35", "08:35"), ("08:50", "11:20"), ("11:27", "13:30")]  # 393 min
REASON_READINGS = [("08:35:02", "SPINDLE_FAULT"), ("08:50:00", ""), ("11:19:58", "E917"),
                   ("11:27:00", "")]
REASON_CODES_CSV = "code,text,category,failure\n" \
                   "SPINDLE_FAULT,spindle drive fault,ADET,true\n" \
                   "MATERIAL,waiting for material,ADET,false\n"


def reason_machine() -> dict[str, Any]:
    """The press of `plant` with a STOPPED state and its `stop_reason` signal."""
    signals = [{"name": "state", "type": "string"}, {"name": "order", "type": "string"},
               {"name": "stop_reason", "type": "string"},
               *({"name": n} for n in ("total", "scrap", "rework", "temp"))]
    return {"signals": signals,
            "state": {"type": "table", "signal": "state",
                      "map": {"IDLE": "ADOT", "SETUP": "ASUT", "RUNNING": "APT",
                              "STOPPED": "ADET"}}}


def reason_example_lines(day: datetime = DAY) -> list[str]:
    """The readings of the shift above, in time order."""
    lines = list(worked_example_lines(day, REASON_STATES, REASON_RUNNING))
    lines += [reading(datetime.fromisoformat(f"{day.date()}T{hms}+00:00"), "stop_reason", value)
              for hms, value in REASON_READINGS]
    return sorted(lines, key=lambda line: str(json.loads(line)["ts"]))  # stable


WORKED_ORDERS_CSV = "order_no,material,planned_qty,pru_min,planned_scrap_qty,machine\n" \
                    "4711,BRKT-20,480,0.75,10,press-1\n"

# The KPI table of docs/kpi.md.
WORKED_KPIS = {
    "availability": 0.866667, "effectiveness": 0.923077, "quality_ratio": 0.958333,
    "oee": 0.766667, "nee": 0.805983, "throughput_rate": 1.103448, "setup_rate": 0.048780,
    "scrap_ratio": 0.025, "rework_ratio": 0.016667, "actual_to_planned_scrap_ratio": 1.2,
    "first_pass_yield": 0.958333, "utilisation_efficiency": 0.896552,
    "allocation_efficiency": 0.966667, "technical_efficiency": 0.939759,
    "production_process_ratio": 0.896552, "mttr": 12.5, "mtbf": 410 / 3,
}
WORKED_TIMES_MIN = {"POT": 480, "PDOT": 30, "NODATA": 0, "PBT": 450, "APT": 390, "ASUT": 20,
                    "ADET": 25, "ADOT": 15, "UNCL": 0, "AUPT": 410, "AUBT": 435, "AOET": 435}


# Scenario B, the next day: a job A100 whose breakdown runs into a planned stop
# (12:00-12:30), a counter reset at 13:00:30, a job B200 with another PRU spanning the
# shift change at 14:00, and silence from 15:00 (last reading) until 15:30.
B_DAY = DAY + timedelta(days=1)
B_STATES = [("06:00", "IDLE", ""), ("10:00", "RUNNING", "A100"), ("11:50", "BREAKDOWN", "A100"),
            ("12:40", "RUNNING", "A100"), ("13:30", "SETUP", "B200"),
            ("13:45", "RUNNING", "B200"), ("15:30", "IDLE", ""), ("16:00", "IDLE", "")]
B_SILENT = (at("15:00", B_DAY), at("15:30", B_DAY))  # no reading strictly inside
B_SCRAP_MINUTES = {at(t, B_DAY) for t in ("10:10", "10:20", "12:50", "13:10")}
B_ORDERS_CSV = "order_no,planned_qty,pru_s\nA100,400,30\nB200,100,60\n"
B_STOP = {"reason": "maintenance", "from": stamp(at("12:00", B_DAY)),
          "to": stamp(at("12:30", B_DAY))}


def scenario_b_lines() -> Iterator[str]:
    changes = {at(t, B_DAY): (s, o) for t, s, o in B_STATES}
    state, total, scrap = "IDLE", 500, 0
    minute = at("06:00", B_DAY)
    while minute <= at("16:00", B_DAY):
        silent = B_SILENT[0] < minute < B_SILENT[1]
        if minute in changes:
            state, order = changes[minute]
            yield reading(minute, "order", order)
            yield reading(minute, "state", state)
        if minute == at("06:00", B_DAY):
            yield reading(minute, "total", total)
            yield reading(minute, "scrap", scrap)
        if not silent:
            yield reading(minute, "temp", 61.0)
        if minute == at("13:00", B_DAY):
            total = 0
            yield reading(minute + timedelta(seconds=30), "total", total)
        if state == "RUNNING" and not silent and minute < B_SILENT[0]:
            end = minute + timedelta(seconds=59)
            total += 1
            yield reading(end, "total", total)
            if minute in B_SCRAP_MINUTES:
                scrap += 1
                yield reading(end, "scrap", scrap)
        minute += timedelta(minutes=1)


# Scenario C: a line of two machines read through companion specifications, a CNC with
# OPC 40001 Machinery enumeration numbers and a packer with PackML names (no job).
C_DAY = DAY + timedelta(days=2)
C_CNC = {"06:00": {"order": "J1", "item": 2, "mode": 2}, "06:20": {"mode": 3},
         "07:20": {"item": 1}, "07:30": {"item": 2}, "08:00": {"item": 3}}
C_PACK = {"06:00": {"state": "Idle", "mode": "Production"}, "06:30": {"state": "Execute"},
          "07:00": {"state": "Held"}, "07:05": {"state": "Execute"},
          "07:45": {"state": "Suspended"}, "08:00": {"state": "Idle"}}


def line_plant(data_dir: Path) -> dict[str, Any]:
    cnc = {"id": "cnc-1", "signals": [{"name": "item"}, {"name": "mode"}, {"name": "total"},
                                      {"name": "order", "type": "string"}, {"name": "temp"}],
           "state": {"type": "machinery", "item_state": "item", "operation_mode": "mode"},
           "counters": {"total": "total"}, "job_signal": "order"}
    pack = {"id": "pack-1", "signals": [{"name": "state", "type": "string"},
                                        {"name": "mode", "type": "string"}, {"name": "temp"}],
            "state": {"type": "packml", "state": "state", "mode": "mode"}}
    data = plant(data_dir)
    data["sites"][0]["lines"] = [{"id": "line-2", "machines": [cnc, pack]}]
    return data


def scenario_c_lines() -> Iterator[str]:
    total = 0
    item = mode = 0
    minute = at("06:00", C_DAY)
    while minute <= at("08:00", C_DAY):
        hhmm = minute.strftime("%H:%M")
        for signal, value in C_CNC.get(hhmm, {}).items():
            item = int(value) if signal == "item" else item
            mode = int(value) if signal == "mode" else mode
            yield reading(minute, signal, value, "cnc-1")
        for signal, value in C_PACK.get(hhmm, {}).items():
            yield reading(minute, signal, value, "pack-1")
        yield reading(minute, "temp", 20.0, "cnc-1")
        yield reading(minute, "temp", 20.0, "pack-1")
        if minute < at("08:00", C_DAY):
            if minute == at("06:00", C_DAY):
                yield reading(minute, "total", total, "cnc-1")
            if (item, mode) == (2, 3):  # Executing, Processing: one part a minute
                total += 1
                yield reading(minute + timedelta(seconds=30), "total", total, "cnc-1")
        minute += timedelta(minutes=1)


# Scenario D: a spindle temperature, a reading every 10 s with noise (sd 0.5 degC) around
# 60 degC, ramping up by 0.02 degC a reading (0.12 degC/min) from 07:00 to 07:20, then
# back at 60 until 08:00. The first 100 readings teach the detector its baseline.
D_DAY = DAY + timedelta(days=3)
D_RAMP = (at("07:00", D_DAY), at("07:20", D_DAY))


def scenario_d_lines(seed: int = 7) -> Iterator[str]:
    rng = np.random.default_rng(seed)
    ts = at("06:00", D_DAY)
    while ts <= at("08:00", D_DAY):
        ramp = 0.0
        if D_RAMP[0] <= ts < D_RAMP[1]:
            ramp = 0.02 * ((ts - D_RAMP[0]).total_seconds() // 10 + 1)
        yield reading(ts, "temp", round(60 + ramp + rng.normal(0, 0.5), 3))
        ts += timedelta(seconds=10)
