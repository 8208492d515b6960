"""Recorded shop-floor scenarios as replay files: the worked example of
shared/reference/iso22400.md, and the plant config they replay against."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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
        "shadow": {
            "database": database,
            "calendar": {"timezone": "UTC", "shifts": [
                {"name": "early", "start": "06:00", "end": "14:00"},
                {"name": "late", "start": "14:00", "end": "22:00"}]},
            "reason_codes": [{"code": "tool", "text": "tool broke", "category": "ADET",
                              "failure": True}],
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


def worked_example_lines(day: datetime = DAY) -> Iterator[str]:
    """The shift of the worked example as readings in time order: the state and order
    on each change, the temperature every minute, and the counters every running
    minute, adding up to PQ 480, SQ 12 and RQ 8 over 390 running minutes."""
    minutes = [at(a, day) + timedelta(minutes=i) for a, b in WORKED_RUNNING
               for i in range(int((at(b, day) - at(a, day)).total_seconds() // 60))]
    produced = {m: WORKED_PQ * (i + 1) // len(minutes) - WORKED_PQ * i // len(minutes)
                for i, m in enumerate(minutes)}
    scrapped = {minutes[i * 30 + 5]: 1 for i in range(WORKED_SQ)}
    reworked = {minutes[i * 40 + 7]: 1 for i in range(WORKED_RQ)}
    changes = {at(t, day): (s, o) for t, s, o in WORKED_STATES}
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


WORKED_ORDERS_CSV = "order_no,material,planned_qty,pru_min,planned_scrap_qty,machine\n" \
                    "4711,BRKT-20,480,0.75,10,press-1\n"

# The KPI table of iso22400.md.
WORKED_KPIS = {
    "availability": 0.866667, "effectiveness": 0.923077, "quality_ratio": 0.958333,
    "oee": 0.766667, "nee": 0.805983, "throughput_rate": 1.103448, "setup_rate": 0.048780,
    "scrap_ratio": 0.025, "rework_ratio": 0.016667, "actual_to_planned_scrap_ratio": 1.2,
    "first_pass_yield": 0.958333, "utilisation_efficiency": 0.896552,
    "allocation_efficiency": 0.966667, "technical_efficiency": 0.939759,
    "production_process_ratio": 0.896552, "mttr": 12.5, "mtbf": 410 / 3,
}
WORKED_TIMES_MIN = {"POT": 480, "PDOT": 30, "PBT": 450, "APT": 390, "ASUT": 20, "ADET": 25,
                    "ADOT": 15, "UNCL": 0, "AUPT": 410, "AUBT": 435, "AOET": 435}
