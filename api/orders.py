"""Production orders: list them with their progress, create them as JSON, or import an
ERP's CSV (the format of `ombre orders import`)."""

from __future__ import annotations

import io
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException
from pydantic import BaseModel

from api.deps import AsAdmin, AsViewer, Store
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
    status: str
    produced: int
    good: int
    scrap: int
    rework: int


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
