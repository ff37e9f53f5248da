"""outbound queue: the due calls of the one outbound engine, who answered a call, and a
resident's calls by time (the engine's dedupe)

Revision ID: 0027_outbound_queue
Revises: 0026_booked_visits
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import eventlog.db

revision = '0027_outbound_queue'
down_revision = '0026_booked_visits'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('outbound_queue',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('ref', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=48), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('resident_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('due_at', eventlog.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('ring_s', sa.Float(), nullable=True),
    sa.Column('created_at', eventlog.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('placed_at', eventlog.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ref')
    )
    with op.batch_alter_table('outbound_queue', schema=None) as batch_op:
        batch_op.create_index('ix_outbound_queue_due', ['state', 'priority', 'due_at'], unique=False)
    with op.batch_alter_table('call', schema=None) as batch_op:
        batch_op.add_column(sa.Column('answered_by', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True))
        batch_op.create_index('ix_call_resident_started', ['resident_id', 'started_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('call', schema=None) as batch_op:
        batch_op.drop_index('ix_call_resident_started')
        batch_op.drop_column('answered_by')
    with op.batch_alter_table('outbound_queue', schema=None) as batch_op:
        batch_op.drop_index('ix_outbound_queue_due')
    op.drop_table('outbound_queue')
