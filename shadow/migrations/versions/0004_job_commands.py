"""Job commands: jobs started or completed through the API, applied by the shadow.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "job_command",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("machine_id", sa.String(length=400), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("job_key", sa.String(length=300), nullable=True),
        sa.Column("requested_ns", sa.BigInteger(), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("applied_ns", sa.BigInteger(), nullable=True),
        sa.Column("result", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_job_command_pending", "job_command", ["applied_ns"])


def downgrade() -> None:
    op.drop_index("ix_job_command_pending", "job_command")
    op.drop_table("job_command")
