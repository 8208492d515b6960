"""Stop reasons from the machine: the raw reason it gave, and who gave the reason code
(the machine or an operator).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("state_interval", sa.Column("reason_raw", sa.String(length=200),
                                              nullable=True))
    op.add_column("state_interval", sa.Column("reason_source", sa.String(length=16),
                                              nullable=True))
    # Reasons given before this revision were all given by operators.
    op.execute("UPDATE state_interval SET reason_source = 'operator' "
               "WHERE reason_code IS NOT NULL")


def downgrade() -> None:
    # Plain ALTER TABLE (SQLite 3.35+): a batch copy of the table would break the views
    # that read it.
    op.drop_column("state_interval", "reason_source")
    op.drop_column("state_interval", "reason_raw")
