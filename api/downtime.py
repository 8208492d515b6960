"""Downtime intervals without a reason, and an operator assigning one (which overrides
a reason the machine gave)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError

from api import audit
from api.deps import AsOperator, AsViewer, MachineIds, Now, Range, RowId, Store, Visible
from shadow.tables import TEXT
from shadow.timeline import Category

router = APIRouter(tags=["downtime"])


class DowntimeOut(BaseModel):
    id: int
    machine: str
    start_ns: int
    end_ns: int
    state: str
    category: Category | None
    reason_raw: str | None  # what the machine gave as its stop reason, no declared code


class ReasonIn(BaseModel):
    code: str = Field(min_length=1, max_length=128, pattern=TEXT)


@router.get("/downtime")
def list_downtime(_: AsViewer, store: Store, window: Range, ids: MachineIds,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[DowntimeOut]:
    """Closed ADET, ADOT and unclassified intervals in the range that have no reason; of
    one `machine`, `line` or `site` if given."""
    return [DowntimeOut(id=i, machine=m, start_ns=s, end_ns=e, state=raw, category=cat,
                        reason_raw=why)
            for i, m, s, e, raw, cat, why in store.unexplained_downtime(window, ids, limit)]


@router.post("/downtime/{interval_id}/reason")
def assign_reason(interval_id: RowId, body: ReasonIn, *, token: AsOperator, store: Store,
                  scope: Visible, now: Now) -> dict[str, str]:
    try:
        done = store.assign_reason(interval_id, body.code, machines=scope.ids())
    except IntegrityError:
        raise HTTPException(422, f"no reason code {body.code!r}") from None
    if not done:
        raise HTTPException(404, f"no downtime interval {interval_id}")
    audit.record(store, token, "downtime.reason", f"state interval {interval_id}",
                 now_ns=now, details={"code": body.code})
    return {"reason": body.code, "reason_source": "operator"}


class ReasonCodeOut(BaseModel):
    code: str
    text: str
    category: Category
    failure: bool


@router.get("/reason-codes")
def list_reason_codes(_: AsViewer, store: Store) -> list[ReasonCodeOut]:
    """The reason codes an operator may give a downtime (shadow.reason_codes)."""
    return [ReasonCodeOut(**row) for row in store.reason_codes()]
