"""The initial tables and views of the digital shadow.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

MINUTE_NS = "60000000000.0"

# Order confirmations for the ERP: quantities and minutes per order and operation, from
# the closed state intervals (a reason code's category overrides the machine's).
ORDER_CONFIRMATION = f"""
CREATE VIEW order_confirmation AS
SELECT o.order_no, o.operation, o.material, o.planned_qty, o.status,
       COALESCE(c.good, 0) AS good, COALESCE(c.scrap, 0) AS scrap,
       COALESCE(c.rework, 0) AS rework,
       COALESCE(t.setup_ns, 0) / {MINUTE_NS} AS setup_min,
       COALESCE(t.run_ns, 0) / {MINUTE_NS} AS run_min,
       COALESCE(t.delay_ns, 0) / {MINUTE_NS} AS delay_min
FROM production_order o
LEFT JOIN (SELECT job_key, SUM(gq) AS good, SUM(sq) AS scrap, SUM(rq) AS rework
           FROM production_count GROUP BY job_key) c ON c.job_key = o.job_key
LEFT JOIN (SELECT si.job_key,
                  SUM(CASE WHEN COALESCE(rc.category, si.category) = 'ASUT'
                      THEN si.end_ns - si.start_ns ELSE 0 END) AS setup_ns,
                  SUM(CASE WHEN COALESCE(rc.category, si.category) = 'APT'
                      THEN si.end_ns - si.start_ns ELSE 0 END) AS run_ns,
                  SUM(CASE WHEN COALESCE(rc.category, si.category) = 'ADET'
                      THEN si.end_ns - si.start_ns ELSE 0 END) AS delay_ns
           FROM state_interval si LEFT JOIN reason_code rc ON rc.code = si.reason_code
           GROUP BY si.job_key) t ON t.job_key = o.job_key
"""

# Shift KPIs for the ERP, as `ombre kpi --by shift` computes them (shift_kpi rows are
# written when a shift has ended).
SHIFT_KPIS = """
CREATE VIEW shift_kpis AS
SELECT s.day, s.name AS shift, s.start_ns, s.end_ns, k.machine_id, k.availability,
       k.effectiveness, k.quality_ratio, k.oee, k.unclassified_share, k.pbt_min,
       k.apt_min, k.pq, k.gq, k.sq, k.rq
FROM shift_kpi k JOIN shift s ON s.id = k.shift_id
"""


def upgrade() -> None:
    op.create_table('equipment',
    sa.Column('id', sa.String(length=400), nullable=False),
    sa.Column('parent_id', sa.String(length=400), nullable=True),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('type', sa.String(length=200), nullable=True),
    sa.Column('connection', sa.Text(), nullable=True),
    sa.Column('calendar', sa.String(length=64), server_default='default', nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('job',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('machine_id', sa.String(length=400), nullable=False),
    sa.Column('job_key', sa.String(length=300), nullable=False),
    sa.Column('start_ns', sa.BigInteger(), nullable=False),
    sa.Column('end_ns', sa.BigInteger(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('machine_id', 'start_ns', name='uq_job_machine_start')
    )
    op.create_table('machine_state',
    sa.Column('machine_id', sa.String(length=400), nullable=False),
    sa.Column('snapshot', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('machine_id')
    )
    op.create_table('planned_stop',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('machine_id', sa.String(length=400), nullable=False),
    sa.Column('start_ns', sa.BigInteger(), nullable=False),
    sa.Column('end_ns', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('machine_id', 'start_ns', 'reason', name='uq_planned_stop')
    )
    op.create_table('production_count',
    sa.Column('machine_id', sa.String(length=400), nullable=False),
    sa.Column('bucket_ns', sa.BigInteger(), nullable=False),
    sa.Column('job_key', sa.String(length=300), nullable=False),
    sa.Column('pq', sa.Integer(), nullable=False),
    sa.Column('gq', sa.Integer(), nullable=False),
    sa.Column('sq', sa.Integer(), nullable=False),
    sa.Column('rq', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('machine_id', 'bucket_ns', 'job_key')
    )
    op.create_table('production_order',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job_key', sa.String(length=300), nullable=False),
    sa.Column('order_no', sa.String(length=200), nullable=False),
    sa.Column('operation', sa.String(length=64), server_default='', nullable=False),
    sa.Column('material', sa.String(length=200), nullable=True),
    sa.Column('planned_qty', sa.Integer(), nullable=False),
    sa.Column('pru_s', sa.Float(), nullable=False),
    sa.Column('planned_scrap_qty', sa.Integer(), server_default='0', nullable=False),
    sa.Column('machine_id', sa.String(length=400), nullable=True),
    sa.Column('status', sa.String(length=16), server_default='planned', nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_key')
    )
    op.create_table('quarantine',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('ts_ns', sa.BigInteger(), nullable=False),
    sa.Column('machine_id', sa.String(length=400), nullable=False),
    sa.Column('signal', sa.String(length=128), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('machine_id', 'signal', 'ts_ns', name='uq_quarantine_reading')
    )
    op.create_table('reason_code',
    sa.Column('code', sa.String(length=128), nullable=False),
    sa.Column('text', sa.String(length=400), nullable=False),
    sa.Column('category', sa.String(length=8), nullable=False),
    sa.Column('failure', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('code')
    )
    op.create_table('shift',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('start_ns', sa.BigInteger(), nullable=False),
    sa.Column('end_ns', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('start_ns', 'name', name='uq_shift_start_name')
    )
    op.create_table('shift_kpi',
    sa.Column('shift_id', sa.Integer(), nullable=False),
    sa.Column('machine_id', sa.String(length=400), nullable=False),
    sa.Column('result', sa.Text(), nullable=False),
    sa.Column('availability', sa.Float(), nullable=True),
    sa.Column('effectiveness', sa.Float(), nullable=True),
    sa.Column('quality_ratio', sa.Float(), nullable=True),
    sa.Column('oee', sa.Float(), nullable=True),
    sa.Column('unclassified_share', sa.Float(), nullable=True),
    sa.Column('pbt_min', sa.Float(), nullable=True),
    sa.Column('apt_min', sa.Float(), nullable=True),
    sa.Column('pq', sa.Float(), nullable=True),
    sa.Column('gq', sa.Float(), nullable=True),
    sa.Column('sq', sa.Float(), nullable=True),
    sa.Column('rq', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['shift_id'], ['shift.id'], ),
    sa.PrimaryKeyConstraint('shift_id', 'machine_id')
    )
    op.create_table('state_interval',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('machine_id', sa.String(length=400), nullable=False),
    sa.Column('start_ns', sa.BigInteger(), nullable=False),
    sa.Column('end_ns', sa.BigInteger(), nullable=False),
    sa.Column('raw_state', sa.String(length=200), nullable=False),
    sa.Column('category', sa.String(length=8), nullable=True),
    sa.Column('failure', sa.Boolean(), nullable=False),
    sa.Column('job_key', sa.String(length=300), nullable=True),
    sa.Column('reason_code', sa.String(length=128), nullable=True),
    sa.ForeignKeyConstraint(['reason_code'], ['reason_code.code'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('machine_id', 'start_ns', name='uq_state_interval_machine_start')
    )
    op.create_index("ix_state_interval_machine_end", "state_interval", ["machine_id", "end_ns"])

    op.execute(ORDER_CONFIRMATION)
    op.execute(SHIFT_KPIS)


def downgrade() -> None:
    op.execute("DROP VIEW shift_kpis")
    op.execute("DROP VIEW order_confirmation")
    op.drop_index("ix_state_interval_machine_end", "state_interval")

    op.drop_table('state_interval')
    op.drop_table('shift_kpi')
    op.drop_table('shift')
    op.drop_table('reason_code')
    op.drop_table('quarantine')
    op.drop_table('production_order')
    op.drop_table('production_count')
    op.drop_table('planned_stop')
    op.drop_table('machine_state')
    op.drop_table('job')
    op.drop_table('equipment')
