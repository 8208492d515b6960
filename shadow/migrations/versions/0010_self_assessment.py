"""The self-assessment's answers (shadow/self_assessment.py): each one with who gave it
and when, never updated.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "self_assessment_answer",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("question", sa.String(length=40), nullable=False),
        sa.Column("answer", sa.String(length=10), nullable=False),
        sa.Column("answered_by", sa.String(length=200), nullable=False),
        sa.Column("answered_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_self_assessment_answer_ts", "self_assessment_answer", ["answered_ns"])


def downgrade() -> None:
    op.drop_index("ix_self_assessment_answer_ts", "self_assessment_answer")
    op.drop_table("self_assessment_answer")
