"""Production orders from an ERP's CSV export. One order operation per row:

    order_no,operation,material,planned_qty,pru_s,planned_scrap_qty,machine
    4711,10,BRKT-20,480,45,10,cnc-1

`order_no`, `planned_qty` and one of `pru_s` / `pru_min` (planned run time per unit)
are required. A new order is `planned`; its status then follows its jobs, and a
later import of the same order changes its plan, not its status. The job key a machine
reports is `order_no`, or `order_no/operation` when the order has an operation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shadow.csv_rows import parse_rows
from shadow.tables import TEXT

MAX_QTY = 10**9
MAX_PRU_S = 10**7  # planned run time per unit: at most about 4 months


def job_key(order_no: str, operation: str) -> str:
    """The job key a machine reports for an order's operation."""
    return f"{order_no}/{operation}" if operation else order_no


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    # Bounds are the tables' (32-bit quantities, VARCHAR lengths).
    order_no: str = Field(min_length=1, max_length=200, pattern=TEXT)
    operation: str = Field(default="", max_length=64, pattern=TEXT)
    material: str | None = Field(default=None, max_length=200, pattern=TEXT)
    planned_qty: int = Field(ge=0, le=MAX_QTY)
    pru_s: float | None = Field(default=None, gt=0, le=MAX_PRU_S)
    pru_min: float | None = Field(default=None, gt=0, le=MAX_PRU_S / 60)
    planned_scrap_qty: int = Field(default=0, ge=0, le=MAX_QTY)
    machine: str | None = Field(default=None, max_length=400, pattern=TEXT)

    @model_validator(mode="after")
    def _one_pru(self) -> OrderIn:
        if (self.pru_s is None) == (self.pru_min is None):
            raise ValueError("expected exactly one of pru_s and pru_min, found "
                             f"{'both' if self.pru_s else 'neither'}")
        return self

    @property
    def job_key(self) -> str:
        return job_key(self.order_no, self.operation)

    def row(self) -> dict[str, Any]:
        pru_s = self.pru_s if self.pru_s is not None else (self.pru_min or 0) * 60
        return {"job_key": self.job_key, "order_no": self.order_no,
                "operation": self.operation, "material": self.material,
                "planned_qty": self.planned_qty, "pru_s": pru_s,
                "planned_scrap_qty": self.planned_scrap_qty, "machine_id": self.machine}


def parse_orders(lines: Iterable[str], source: str) -> tuple[list[OrderIn], list[str]]:
    """The valid orders of a CSV text and one message per bad row (shadow.csv_rows)."""
    return parse_rows(lines, source, OrderIn, "order_no",
                      "order_no, planned_qty and pru_s or pru_min")


def order_rows(orders: Iterable[OrderIn]) -> list[dict[str, Any]]:
    """Production_order rows; the last order wins for a repeated job key."""
    return list({order.job_key: order.row() for order in orders}.values())
