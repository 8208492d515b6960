"""The fleet (shadow/fleet.py): a lease per site (fleet_lease), held by one central
process at a time, and the processes alive (fleet_member).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "fleet_lease",
        sa.Column("site_id", sa.String(length=128), nullable=False),
        sa.Column("member", sa.String(length=128), nullable=False),
        sa.Column("instance", sa.String(length=32), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("site_id"),
    )
    op.create_table(
        "fleet_member",
        sa.Column("member", sa.String(length=128), nullable=False),
        sa.Column("instance", sa.String(length=32), nullable=False),
        sa.Column("seen_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("member"),
    )


def downgrade() -> None:
    op.drop_table("fleet_member")
    op.drop_table("fleet_lease")
