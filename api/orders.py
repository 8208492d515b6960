"""Production orders: list them with their progress, create them as JSON, or import an
ERP's CSV (the format of `ombre orders import`)."""

from __future__ import annotations

import io
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException
from pydantic import BaseModel

from api.deps import AsAdmin, AsOperator, AsViewer, Config, Now, Store
from api.jobs import JobIn
from shadow.completion import CompletionRefusedError, UnknownOrderError, complete_order
from shadow.csv_rows import CsvError
from shadow.orders import OrderIn, order_rows, parse_orders

router = APIRouter(tags=["orders"])


class OrderOut(BaseModel):
    job_key: str
    order_no: str
    operation: str
    material: str | None
    planned_qty: int
    pru_s: float
    planned_scrap_qty: int
    machine: str | None
    status: str  # planned, running, completed, closed
    end_ns: int | None  # when it was completed or closed
    ended_by: str | None  # signal, command, quantity, restart
    end_reason: str | None
    produced: int
    good: int
    scrap: int
    rework: int


class CompletionOut(BaseModel):
    """The job commands recorded (the shadow applies them; see /job-commands/{id}),
    or none and the order's status now."""

    commands: list[int]
    status: str
    changed: bool


class ImportOut(BaseModel):
    imported: int
    problems: list[str]


@router.get("/orders")
def list_orders(_: AsViewer, store: Store) -> list[OrderOut]:
    """Every order with the parts counted for it so far."""
    return [OrderOut(**row) for row in store.orders()]


@router.post("/orders")
def create_orders(orders: list[OrderIn], _: AsAdmin, store: Store) -> ImportOut:
    """Creates or updates orders by job key (`order_no`, or `order_no/operation`)."""
    return ImportOut(imported=store.import_orders([o.row() for o in orders]), problems=[])


@router.post("/orders/import")
def import_orders(csv_text: Annotated[str, Body(media_type="text/csv")], _: AsAdmin,
                  store: Store) -> ImportOut:
    """A CSV upload; the good rows are imported and each bad row is reported by line."""
    try:
        orders, problems = parse_orders(io.StringIO(csv_text), "upload")
    except CsvError as exc:
        raise HTTPException(422, str(exc)) from None
    return ImportOut(imported=store.import_orders(order_rows(orders)), problems=problems)


@router.post("/orders/complete")
def complete(body: JobIn, *, token: AsOperator, store: Store, config: Config,
             now: Now) -> CompletionOut:
    """Completes an order: its jobs on machines without a job signal end through the
    shadow (job commands), one no machine runs is completed at once; one a machine's job
    signal runs is refused (409)."""
    try:
        done = complete_order(store, config.machines(), body.job_key, token.name, now)
    except UnknownOrderError as exc:
        raise HTTPException(404, str(exc)) from None
    except CompletionRefusedError as exc:
        raise HTTPException(409, str(exc)) from None
    return CompletionOut(commands=[c for _, c in done.commands], status=done.status,
                         changed=done.changed)
