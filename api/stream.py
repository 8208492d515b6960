"""The live stream: Server-Sent Events with machine states, new and changed alerts, and
the KPIs of the current shift. The stream polls the shadow's tables, so it works in a
process of its own, and each client gets at most one update per machine and interval:
a slow client only slows its own stream, never the gateway."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from api.alerts import alert_views
from api.config import ServedConfig
from api.deps import AsViewer, Config, Store
from api.machines import MachineOut, machine_view
from shadow.calendar import shifts
from shadow.report import kpi
from shadow.store import ShadowStore
from shadow.timeline import NS_PER_S, Window

router = APIRouter(tags=["stream"])
KPI_EVERY = 10  # intervals between two KPI refreshes


def _event(kind: str, data: str) -> str:
    return f"event: {kind}\ndata: {data}\n\n"


def _shift_kpis(store: ShadowStore, config: ServedConfig, now_ns: int) -> str:
    """OEE, its factors, coverage and the unknown share per machine over the shift
    running now (the last 8 hours when the calendar has no shift)."""
    current = [s.window for s in shifts(config.shadow.calendar, Window(now_ns, now_ns + 1))
               if s.window.start_ns <= now_ns < s.window.end_ns]
    window = Window(current[0].start_ns if current else now_ns - 8 * 3600 * NS_PER_S, now_ns)
    out = {}
    for machine in config.machines():
        result = kpi(store, config, window, [machine]).to_dict()
        out[machine.id] = {k: result["kpis"][k]["value"] for k in
                           ("availability", "effectiveness", "quality_ratio", "oee")}
        out[machine.id] |= {"coverage": result["coverage"]["value"],
                            "no_data_s": result["coverage"]["no_data_s"],
                            "unclassified_share": result["unclassified_share"]["value"]}
    return json.dumps({"from_ns": window.start_ns, "to_ns": window.end_ns, "machines": out})


@router.get("/stream")
async def stream(request: Request, _: AsViewer, store: Store, config: Config,
                 interval_s: Annotated[float, Query(ge=0.2, le=60)] = 1.0) -> StreamingResponse:
    """`event: machine` (a MachineOut, when it changed), `event: alert` (an alert, when
    new or changed) and `event: kpis` (the current shift's OEE per machine)."""
    clock = request.app.state.clock

    async def events() -> AsyncIterator[str]:
        machines: dict[str, str] = {}
        alerts: dict[int, str] = {}
        tick = 0
        while not await request.is_disconnected():
            now = int(clock())
            snaps = await asyncio.to_thread(store.snapshots)
            for m in config.machines():
                view = MachineOut(**machine_view(config, m, snaps.get(m.id), now))
                data = view.model_dump_json()
                if machines.get(m.id) != data:
                    machines[m.id] = data
                    yield _event("machine", data)
            found = await asyncio.to_thread(alert_views, store, None, None, 50)
            for alert in reversed(found):
                data = alert.model_dump_json()
                if alerts.get(alert.id) != data:
                    alerts[alert.id] = data
                    yield _event("alert", data)
            if len(alerts) > 1000:  # bounded: forget the oldest
                for key in sorted(alerts)[:-500]:
                    del alerts[key]
            if tick % KPI_EVERY == 0:
                yield _event("kpis", await asyncio.to_thread(_shift_kpis, store, config, now))
            tick += 1
            await asyncio.sleep(interval_s)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})
