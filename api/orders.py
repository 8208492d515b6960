"""Production orders: list them with their progress, create them as JSON, or import an
ERP's CSV (the format of `ombre orders import`)."""

from __future__ import annotations

import io
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException
from pydantic import BaseModel

from api import audit
from api.deps import AsAdmin, AsOperator, AsViewer, Config, Now, PlantWide, Store, Visible
from api.jobs import JobIn
from api.tokens import Token
from shadow.audit import orders_details
from shadow.completion import CompletionRefusedError, UnknownOrderError, complete_order
from shadow.csv_rows import CsvError
from shadow.orders import OrderIn, order_rows, parse_orders
from shadow.store import ShadowStore

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
def list_orders(_: AsViewer, store: Store, scope: Visible) -> list[OrderOut]:
    """Every order with the parts counted for it so far; for a token scoped to a site,
    the orders its machines run or ran."""
    ids = scope.ids()
    return [OrderOut(**row) for row in store.orders() if ids is None or row["machine"] in ids]


@router.post("/orders")
def create_orders(orders: list[OrderIn], token: AsAdmin, store: Store, now: Now) -> ImportOut:
    """Creates or updates orders by job key (`order_no`, or `order_no/operation`)."""
    return _imported(store, token, now, "api:json", rows=order_rows(orders), problems=[])


@router.post("/orders/import")
def import_orders(csv_bytes: Annotated[bytes, Body(media_type="text/csv")], token: AsAdmin,
                  store: Store, now: Now) -> ImportOut:
    """A CSV upload in UTF-8; the good rows are imported and each bad row is reported by
    line. A body that is not UTF-8 is refused with 400 naming its first bad line."""
    try:
        csv_text = csv_bytes.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = csv_bytes.count(b"\n", 0, exc.start) + 1
        raise HTTPException(400, f"upload:{line}: not UTF-8 (byte 0x{csv_bytes[exc.start]:02x}"
                                 f" at offset {exc.start}); export the CSV as UTF-8") from None
    try:
        orders, problems = parse_orders(io.StringIO(csv_text), "upload")
    except CsvError as exc:
        raise HTTPException(422, str(exc)) from None
    return _imported(store, token, now, "api:csv", rows=order_rows(orders), problems=problems)


@router.post("/orders/complete", dependencies=[PlantWide])  # an order may span sites
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
    commands = [c for _, c in done.commands]
    audit.record(store, token, "job.complete", f"order {body.job_key}", now_ns=now,
                 details={"status": done.status, "job_commands": commands})
    return CompletionOut(commands=commands, status=done.status, changed=done.changed)


def _imported(store: ShadowStore, token: Token, now: int, source: str, *,
              rows: list[dict[str, Any]], problems: list[str]) -> ImportOut:
    """Imports the good rows and records in the audit log who imported which orders."""
    imported = store.import_orders(rows)
    audit.record(store, token, "orders.import", source, now_ns=now,
                 details=orders_details(rows, problems))
    return ImportOut(imported=imported, problems=problems)
