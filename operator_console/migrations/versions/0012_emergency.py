"""emergencies: a call's emergency reason, its escalation, and the on-call list

Revision ID: 0012_emergency
Revises: 0011_login_attempt
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import eventlog.db

revision = '0012_emergency'
down_revision = '0011_login_attempt'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('oncall_phone',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('label', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('emergency_escalation',
    sa.Column('call_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('call_ref', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('stage', sa.String(length=32), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('plan', sa.JSON().with_variant(sa.JSON(none_as_null=True), 'postgresql'), nullable=True),
    sa.Column('dialled_120', sa.Boolean(), nullable=False),
    sa.Column('started_at', eventlog.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('overflow_at', eventlog.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('taken_by', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('taken_at', eventlog.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_at', eventlog.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['call.id'], ),
    sa.PrimaryKeyConstraint('call_id')
    )
    with op.batch_alter_table('emergency_escalation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_emergency_escalation_stage'), ['stage'], unique=False)

    with op.batch_alter_table('call', schema=None) as batch_op:
        batch_op.add_column(sa.Column('emergency_reason', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
    # emergencies from before this column all came from the hotline's emergency key
    op.execute('UPDATE "call" SET emergency_reason = \'key\' WHERE emergency')



def downgrade() -> None:
    with op.batch_alter_table('call', schema=None) as batch_op:
        batch_op.drop_column('emergency_reason')

    with op.batch_alter_table('emergency_escalation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_emergency_escalation_stage'))

    op.drop_table('emergency_escalation')
    op.drop_table('oncall_phone')
