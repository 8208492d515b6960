"""ISO 22400 KPIs, computed exactly as `ombre kpi` computes them (shadow/report.py)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException

from api.deps import AsViewer, Config, Range, Store
from shadow.report import reports, select_machines

router = APIRouter(tags=["kpis"])


@router.get("/kpis")
def get_kpis(*, _: AsViewer, store: Store, config: Config, window: Range,
             machine: str | None = None, line: str | None = None,
             by: Literal["window", "shift", "order", "day"] = "window") -> list[dict[str, Any]]:
    """Every KPI with the time elements (seconds) and quantities it came from, per
    shift, order or day if asked; a ratio whose denominator is 0 is null, with the
    reason; coverage says how much of the planned busy time has data. The same numbers
    as `ombre kpi --json`, whenever and wherever either is asked."""
    if machine is not None and line is not None:
        raise HTTPException(400, "give `machine` or `line`, not both")
    try:
        machines = select_machines(config, machine, line)
    except KeyError as exc:
        raise HTTPException(404, exc.args[0]) from None
    return [{"label": r.label, **r.result.to_dict()}
            for r in reports(store, config, window, machines, by)]
