"""incidents: many calls about one outage in a grid, one ticket, one callback round

Revision ID: 0014_incidents
Revises: 0013_callouts
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import eventlog.db

revision = '0014_incidents'
down_revision = '0013_callouts'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('incident',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('grid_code', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('category_code', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('ticket_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('opened_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('opened_at', eventlog.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('dispatched_at', eventlog.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('fixed_at', eventlog.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('fixed_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('done_at', eventlog.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['category_code'], ['service_category.code'], ),
    sa.ForeignKeyConstraint(['grid_code'], ['grid.code'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('incident', schema=None) as batch_op:
        batch_op.create_index('ix_incident_grid_category', ['grid_code', 'category_code', 'state'], unique=False)
        batch_op.create_index(batch_op.f('ix_incident_ticket_id'), ['ticket_id'], unique=False)

    op.create_table('incident_call',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('incident_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('call_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('resident_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('number', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('linked_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('linked_at', eventlog.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('callback_ref', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('callback_outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('retry_at', eventlog.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('call_id'),
    sa.UniqueConstraint('callback_ref')
    )
    with op.batch_alter_table('incident_call', schema=None) as batch_op:
        batch_op.create_index('ix_incident_call_incident', ['incident_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('incident_call', schema=None) as batch_op:
        batch_op.drop_index('ix_incident_call_incident')

    op.drop_table('incident_call')
    with op.batch_alter_table('incident', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_incident_ticket_id'))
        batch_op.drop_index('ix_incident_grid_category')

    op.drop_table('incident')
