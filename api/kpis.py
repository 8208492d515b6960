"""ISO 22400 KPIs, computed exactly as `ombre kpi` computes them (shadow/report.py)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter

from api.deps import AsViewer, Config, Machines, Range, Store
from shadow.report import reports

router = APIRouter(tags=["kpis"])


@router.get("/kpis")
def get_kpis(*, _: AsViewer, store: Store, config: Config, window: Range,
             machines: Machines,
             by: Literal["window", "shift", "order", "day"] = "window") -> list[dict[str, Any]]:
    """Every KPI with the time elements (seconds) and quantities it came from, per
    shift, order or day if asked; a ratio whose denominator is 0 is null, with the
    reason; coverage says how much of the planned busy time has data. The same numbers
    as `ombre kpi --json`, whenever and wherever either is asked."""
    return [{"label": r.label, **r.result.to_dict()}
            for r in reports(store, config, window, machines, by)]
