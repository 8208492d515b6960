"""The lost time of a shift, day or week by cause and by machine, with the intervals
behind each bar (shadow.losses): what the losses page draws as Pareto charts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from api.deps import AsViewer, Config, Machines, Now, Store, bounded
from shadow.calendar import to_ns
from shadow.losses import WindowKind, loss_window, losses

router = APIRouter(tags=["kpis"])


@router.get("/losses")
def get_losses(*, _: AsViewer, store: Store, config: Config, now: Now,
               window: WindowKind = "shift", at: datetime | None = None,
               machines: Machines,
               max_pieces: Annotated[int, Query(ge=1, le=5000)] = 1000) -> dict[str, Any]:
    """The lost seconds of the shift, local day or local week (Monday to Monday) that
    holds `at` (RFC 3339; without a zone, UTC; by default now), of one machine, one line
    or every machine: a Pareto by cause (a reason code, `unexplained` downtime nobody
    gave a reason yet, `setup` with no reason, `speed`, `defects`, `startup_rejects`) and
    one by machine, each bar split into ISO 22400 loss families and the six big losses,
    with its pieces (at most `max_pieces` per bar, and how many there are). A machine's
    pieces add up to its KPIs' loss view, given as `kpi_losses_s`."""
    at_ns = now if at is None else to_ns(bounded("at", at))
    try:
        span = loss_window(config, window, at_ns)
    except ValueError as exc:
        raise HTTPException(404, str(exc)) from None
    return {"kind": window, **losses(store, config, span, machines).to_dict(max_pieces)}
