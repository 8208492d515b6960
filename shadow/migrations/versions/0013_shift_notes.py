"""Operators' notes on a line's shift (shift_note), which the shift report lists.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "shift_note",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("line_id", sa.String(length=400), nullable=False),
        sa.Column("shift_start_ns", sa.BigInteger(), nullable=False),
        sa.Column("shift_name", sa.String(length=128), nullable=False),
        sa.Column("written_ns", sa.BigInteger(), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_shift_note_line_shift", "shift_note", ["line_id", "shift_start_ns"])


def downgrade() -> None:
    op.drop_index("ix_shift_note_line_shift", "shift_note")
    op.drop_table("shift_note")
