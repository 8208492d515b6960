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
from api.deps import AsViewer, Config, MachineIds, Machines, Store
from api.machines import MachineOut, machine_view
from shadow.config import ShadowMachineConfig
from shadow.report import current_shift, live_kpis
from shadow.store import ShadowStore

router = APIRouter(tags=["stream"])
KPI_EVERY = 10  # intervals between two KPI refreshes


def _event(kind: str, data: str) -> str:
    return f"event: {kind}\ndata: {data}\n\n"


def _shift_kpis(store: ShadowStore, config: ServedConfig, machines: list[ShadowMachineConfig],
                now_ns: int) -> str:
    """OEE, its factors, coverage and the unknown share per machine, per line (with its
    name) and for all `machines` ("plant": the plant, or the site or line the stream
    shows) over the shift running now (the last 8 hours when the calendar has no
    shift)."""
    window = current_shift(config, now_ns)
    shown = {m.id for m in machines}
    out = {m.id: live_kpis(store, config, window, [m]) for m in machines}
    lines = {line.id: {"name": line.name, **live_kpis(store, config, window, line.machines)}
             for site in config.sites for line in site.all_lines()
             if any(m.id in shown for m in line.machines)}
    return json.dumps({"from_ns": window.start_ns, "to_ns": window.end_ns, "machines": out,
                       "lines": lines, "plant": live_kpis(store, config, window, machines)})


@router.get("/stream")
async def stream(request: Request, *, _: AsViewer, store: Store, config: Config,
                 shown: Machines, ids: MachineIds,
                 interval_s: Annotated[float, Query(ge=0.2, le=60)] = 1.0) -> StreamingResponse:
    """`event: clock` (the server's time, `now_ns`, every interval: how long each
    machine has been in its state), `event: machine` (a MachineOut, when it changed),
    `event: alert` (an alert, when new or changed) and `event: kpis` (the current
    shift's OEE per machine, per line and for the plant). With `site` or `line` (and
    for a token scoped to a site), only those machines, their lines, their alerts, and
    as "plant" their KPIs together."""
    clock = request.app.state.clock
    places = config.places()

    async def events() -> AsyncIterator[str]:
        machines: dict[str, str] = {}
        alerts: dict[int, str] = {}
        tick = 0
        while not await request.is_disconnected():
            now = int(clock())
            yield _event("clock", json.dumps({"now_ns": now}))
            snaps = await asyncio.to_thread(store.snapshots)
            for m in shown:
                view = MachineOut(**machine_view(places[m.id], m, snaps.get(m.id), now))
                data = view.model_dump_json()
                if machines.get(m.id) != data:
                    machines[m.id] = data
                    yield _event("machine", data)
            found = await asyncio.to_thread(alert_views, store, None, ids, 50)
            for alert in reversed(found):
                data = alert.model_dump_json()
                if alerts.get(alert.id) != data:
                    alerts[alert.id] = data
                    yield _event("alert", data)
            if len(alerts) > 1000:  # bounded: forget the oldest
                for key in sorted(alerts)[:-500]:
                    del alerts[key]
            if tick % KPI_EVERY == 0:
                yield _event("kpis", await asyncio.to_thread(_shift_kpis, store, config,
                                                             shown, now))
            tick += 1
            await asyncio.sleep(interval_s)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})
