"""Data completeness, readings lost and the live model's age (shadow/maturity.py): the
readings the shadow received per signal and hour of data time (reading_count), the
readings each run of the gateway dropped (gateway_run.readings_lost; null for runs
before this revision), and each machine's age sampled once a minute (model_age).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "reading_count",
        sa.Column("machine_id", sa.String(length=400), nullable=False),
        sa.Column("signal", sa.String(length=128), nullable=False),
        sa.Column("hour_ns", sa.BigInteger(), nullable=False),
        sa.Column("readings", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("machine_id", "signal", "hour_ns"),
    )
    op.create_index("ix_reading_count_hour", "reading_count", ["hour_ns"])
    op.create_table(
        "model_age",
        sa.Column("machine_id", sa.String(length=400), nullable=False),
        sa.Column("minute_ns", sa.BigInteger(), nullable=False),
        sa.Column("age_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("machine_id", "minute_ns"),
    )
    op.create_index("ix_model_age_minute", "model_age", ["minute_ns"])
    with op.batch_alter_table("gateway_run") as batch:
        batch.add_column(sa.Column("readings_lost", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateway_run") as batch:
        batch.drop_column("readings_lost")
    op.drop_index("ix_model_age_minute", "model_age")
    op.drop_table("model_age")
    op.drop_index("ix_reading_count_hour", "reading_count")
    op.drop_table("reading_count")
