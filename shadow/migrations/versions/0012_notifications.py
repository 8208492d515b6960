"""Notifications (shadow/notifier.py): the durable queue of messages (notification) and
the incidents open or with news not yet sent (notification_incident).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "notification",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_ns", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("done_ns", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_notification_status_next", "notification", ["status", "next_ns"])
    op.create_table(
        "notification_incident",
        sa.Column("rule", sa.String(length=128), nullable=False),
        sa.Column("subject", sa.String(length=400), nullable=False),
        sa.Column("opened_ns", sa.BigInteger(), nullable=False),
        sa.Column("cleared_ns", sa.BigInteger(), nullable=True),
        sa.Column("openings", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("notified", sa.String(length=16), nullable=True),
        sa.Column("changed_ns", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("rule", "subject"),
    )


def downgrade() -> None:
    op.drop_table("notification_incident")
    op.drop_index("ix_notification_status_next", "notification")
    op.drop_table("notification")
