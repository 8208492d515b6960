"""Coverage: the data time each run of the gateway's shadow covered (gateway_run).

Data written before this table existed counts as one run, from the first to the last
state interval, so an upgrade does not turn that history into time with no data.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "gateway_run",
        sa.Column("started_ns", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("start_ns", sa.BigInteger(), nullable=False),
        sa.Column("end_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("started_ns"),
    )
    op.execute("INSERT INTO gateway_run (started_ns, start_ns, end_ns) "
               "SELECT 0, MIN(start_ns), MAX(end_ns) FROM state_interval HAVING COUNT(*) > 0")


def downgrade() -> None:
    op.drop_table("gateway_run")
