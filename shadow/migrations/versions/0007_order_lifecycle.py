"""Order lifecycle: how and why a job and an order ended (the job signal, a person,
the planned quantity, or a restart that found it orphaned).

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


COLUMNS: dict[str, list[tuple[str, sa.types.TypeEngine[Any]]]] = {
    "job": [("ended_by", sa.String(length=16)), ("end_reason", sa.String(length=200))],
    "production_order": [("end_ns", sa.BigInteger()), ("ended_by", sa.String(length=16)),
                         ("end_reason", sa.String(length=200))],
}


def upgrade() -> None:
    for table, columns in COLUMNS.items():
        for name, kind in columns:
            op.add_column(table, sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    for table, columns in COLUMNS.items():
        for name, _ in columns[::-1]:
            op.drop_column(table, name)
