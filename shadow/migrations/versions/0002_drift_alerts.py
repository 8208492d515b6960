"""Drift alerts, and the shadow's state that belongs to no one machine.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table('drift_alert',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('machine_id', sa.String(length=400), nullable=False),
    sa.Column('signal', sa.String(length=128), nullable=False),
    sa.Column('detector', sa.String(length=16), nullable=False),
    sa.Column('params', sa.Text(), nullable=False),
    sa.Column('start_ns', sa.BigInteger(), nullable=False),
    sa.Column('detected_ns', sa.BigInteger(), nullable=False),
    sa.Column('last_alarm_ns', sa.BigInteger(), nullable=False),
    sa.Column('in_control_ns', sa.BigInteger(), nullable=False),
    sa.Column('end_ns', sa.BigInteger(), nullable=True),
    sa.Column('direction', sa.String(length=4), nullable=False),
    sa.Column('shift_sigma', sa.Float(), nullable=False),
    sa.Column('shift_value', sa.Float(), nullable=False),
    sa.Column('unit', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('acknowledged_by', sa.String(length=128), nullable=True),
    sa.Column('acknowledged_ns', sa.BigInteger(), nullable=True),
    sa.Column('closed_by', sa.String(length=128), nullable=True),
    sa.Column('cause', sa.String(length=128), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('machine_id', 'signal', 'detector', 'detected_ns', name='uq_drift_alert')
    )
    op.create_index("ix_drift_alert_status", "drift_alert", ["status"])

    op.create_table('shadow_state',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )


def downgrade() -> None:
    op.drop_table('shadow_state')
    op.drop_index("ix_drift_alert_status", "drift_alert")

    op.drop_table('drift_alert')
