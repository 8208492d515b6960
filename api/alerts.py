"""Drift alerts: list them, acknowledge one, close one with a cause."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from api import audit
from api.deps import AsOperator, AsViewer, Config, MachineIds, Now, RowId, Scope, Store, Visible
from shadow.store import ShadowStore
from shadow.tables import TEXT

router = APIRouter(tags=["alerts"])
Status = Literal["open", "acknowledged", "closed"]


class AlertOut(BaseModel):
    id: int
    machine: str
    signal: str
    detector: str
    status: Status
    direction: Literal["up", "down"]
    shift_sigma: float
    shift_value: float
    unit: str | None
    start_ns: int
    detected_ns: int
    end_ns: int | None
    acknowledged_by: str | None
    closed_by: str | None
    cause: str | None
    note: str | None


class CloseIn(BaseModel):
    cause: str = Field(min_length=1, max_length=128)
    note: str | None = Field(default=None, max_length=2000, pattern=TEXT)


@router.get("/alerts")
def list_alerts(_: AsViewer, store: Store, ids: MachineIds, status: Status | None = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[AlertOut]:
    """Newest first; of one `machine`, `line` or `site` if given."""
    return alert_views(store, status, ids, limit)


def alert_views(store: ShadowStore, status: Status | None, machines: list[str] | None,
                limit: int) -> list[AlertOut]:
    return [AlertOut(id=r.id, machine=r.machine_id, signal=r.signal, detector=r.detector,
                     status=r.status, direction=r.direction, shift_sigma=r.shift_sigma,
                     shift_value=r.shift_value, unit=r.unit, start_ns=r.start_ns,
                     detected_ns=r.detected_ns, end_ns=r.end_ns,
                     acknowledged_by=r.acknowledged_by, closed_by=r.closed_by, cause=r.cause,
                     note=r.note)
            for r in store.alerts(status=status, machines=machines, limit=limit)]


@router.post("/alerts/{alert_id}/ack")
def acknowledge(alert_id: RowId, token: AsOperator, store: Store, scope: Visible,
                now: Now) -> dict[str, str]:
    """The operator saw it; it stays open until back in control or closed."""
    if not store.acknowledge_alert(alert_id, token.name, now, machines=scope.ids()):
        raise _not_done(store, scope, alert_id, "acknowledged")
    audit.record(store, token, "alert.acknowledge", f"alert {alert_id}", now_ns=now)
    return {"status": "acknowledged"}


@router.post("/alerts/{alert_id}/close")
def close(alert_id: RowId, body: CloseIn, *, token: AsOperator, store: Store, config: Config,
          scope: Visible, now: Now) -> dict[str, str]:
    """Closes it with a cause from shadow.alert_causes and an optional note."""
    if body.cause not in config.shadow.alert_causes:
        raise HTTPException(422, f"cause must be one of {config.shadow.alert_causes}, "
                                 f"found {body.cause!r}")
    if not store.close_alert(alert_id, token.name, body.cause, body.note, now,
                             machines=scope.ids()):
        raise _not_done(store, scope, alert_id, "closed")
    audit.record(store, token, "alert.close", f"alert {alert_id}", now_ns=now,
                 details={"cause": body.cause, "note": body.note})
    return {"status": "closed"}


def _not_done(store: ShadowStore, scope: Scope, alert_id: int, action: str) -> HTTPException:
    """404 for an alert that does not exist (in the scope), 409 for one whose status
    refused it."""
    status = store.alert_status(alert_id, machines=scope.ids())
    if status is None:
        return HTTPException(404, f"no alert {alert_id}")
    return HTTPException(409, f"alert {alert_id} is {status}: it cannot be {action}")


@router.get("/alert-causes")
def list_alert_causes(_: AsViewer, config: Config) -> list[str]:
    """The causes a person may give when closing an alert (shadow.alert_causes)."""
    return list(config.shadow.alert_causes)
